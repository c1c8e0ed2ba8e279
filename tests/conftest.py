"""Real services for the tests: a mongod replica set, versitygw, and the control plane.

Each starts once per session on free loopback ports under a temporary directory and is
stopped by its PID at the end. Tests share them and start from emptied collections.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from aisci_nb.db import ensure_indexes
from aisci_nb.ops.services import build_versitygw, ephemeral_stack, find_versitygw
from aisci_nb.settings import Settings
from aisci_nb.storage.store import S3Store, open_store

ROOT = Path(__file__).resolve().parent.parent
# The two-moons baseline as a one-step pipeline: the walking skeleton's tests run it rather
# than the four-stage tree search (tests/integration of the tree search cover that).
BASELINE_WORKER = ROOT / "tests" / "worker_driver.py"
BASELINE_ENV = {"TEST_NOTEBOOK": "baseline.ipynb", "PYTHONPATH": str(ROOT)}
API_KEY = "test-ingest-key-not-a-secret"
# The single-user token: pages and the people's API (cancel, ...) as an operator.
UI_TOKEN = "test-ui-token-" + secrets.token_hex(8)
UI_AUTH = {"authorization": f"Bearer {UI_TOKEN}"}
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
        store = open_store(self.settings)
        assert isinstance(store, S3Store)
        return store

    def popen_worker(self, *args: str, extra_env: dict | None = None,
                     script: Path = ROOT / "worker.py") -> subprocess.Popen:
        """A worker in the background, logging to `self.tmp / "worker.log"`."""
        env = {**os.environ, **self.env, **(extra_env or {})}
        log = (self.tmp / "worker.log").open("ab")
        return subprocess.Popen([sys.executable, str(script), *args], env=env,
                                cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT)

    def worker_log(self) -> str:
        path = self.tmp / "worker.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def run_worker(self, *args: str, timeout: float = 300, extra_env: dict | None = None,
                   cwd: Path | None = None,
                   script: Path = ROOT / "worker.py") -> subprocess.CompletedProcess:
        env = {**os.environ, **self.env, **(extra_env or {})}
        return subprocess.run([sys.executable, str(script), *args], env=env,
                              cwd=cwd or self.tmp, capture_output=True, text=True,
                              timeout=timeout)


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("services")
    gw = find_versitygw(ROOT / ".aisci" / "bin") or build_versitygw(ROOT / ".aisci" / "bin")
    # A second, older key proves rotation: both are accepted.
    with ephemeral_stack(tmp, s3_binary=gw, s3_secret=S3_SECRET, api_key=API_KEY,
                         old_api_keys=("old-rotated-key",), ui_token=UI_TOKEN) as env:
        yield {"env": {**env, "POLL_INTERVAL_S": "0.2"}, "tmp": tmp}


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


def wait_until(predicate, timeout_s: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
