"""`aisci services up | down | status` on a fresh directory, with real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from aisci_nb.ops.services import free_port, pid_alive

ROOT = Path(__file__).resolve().parents[2]


def aisci(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{ROOT / '.aisci' / 'bin'}:{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", "aisci_nb.ops.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)


def test_up_is_idempotent_and_down_stops_exactly_its_pids(tmp_path: Path) -> None:
    ports = ["--mongo-port", str(free_port()), "--s3-port", str(free_port()),
             "--cp-port", str(free_port())]
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-test-not-real\n")
    first = aisci(tmp_path, "services", "up", *ports)
    try:
        assert first.returncode == 0, first.stderr
        assert first.stdout.count("started") == 3
        state = json.loads((tmp_path / ".aisci" / "services.json").read_text())
        pids = {name: s["pid"] for name, s in state["services"].items()}
        assert set(pids) == {"mongod", "s3", "control-plane"}
        env_lines = (tmp_path / ".env").read_text().splitlines()
        assert "OPENAI_API_KEY=sk-test-not-real" in env_lines  # the user's line is kept
        assert any(ln.startswith("MONGODB_URL=mongodb://aisci:") for ln in env_lines)
        assert any(ln.startswith("MINIO_ENDPOINT=127.0.0.1:") for ln in env_lines)
        # Owner-only state, and a mongod that refuses whoever has no password.
        assert (tmp_path / ".aisci").stat().st_mode & 0o777 == 0o700
        assert (tmp_path / ".aisci" / "mongo-keyfile").stat().st_mode & 0o777 == 0o400
        url = next(ln.split("=", 1)[1] for ln in env_lines if ln.startswith("MONGODB_URL="))
        assert MongoClient(url).get_default_database().command("ping")["ok"] == 1
        anonymous = MongoClient(f"mongodb://127.0.0.1:{ports[1]}/?directConnection=true",
                                serverSelectionTimeoutMS=5000)
        with pytest.raises(OperationFailure, match="requires authentication"):
            anonymous.ai_scientist.runs.find_one()
        anonymous.close()

        again = aisci(tmp_path, "services", "up", *ports)
        assert again.returncode == 0 and again.stdout.count("running") == 3
        state2 = json.loads((tmp_path / ".aisci" / "services.json").read_text())
        assert {n: s["pid"] for n, s in state2["services"].items()} == pids

        status = aisci(tmp_path, "services", "status").stdout.splitlines()
        assert len(status) == 3 and all(" running " in ln for ln in status)

        other = tmp_path / "other"
        other.mkdir()
        clash = aisci(other, "services", "up", *ports)
        assert clash.returncode == 1
        assert clash.stderr.strip() == f"aisci: error: port {ports[1]} for mongod is already " \
                                       "taken by another process"
    finally:
        down = aisci(tmp_path, "services", "down")
    assert down.returncode == 0
    assert down.stdout.count("stopped") == 3
    assert not any(pid_alive(pid) for pid in pids.values())
    status = aisci(tmp_path, "services", "status").stdout.splitlines()
    assert all(ln.endswith("stopped") for ln in status)
