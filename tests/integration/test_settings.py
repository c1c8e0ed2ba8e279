"""Configuration errors are one line and exit code 2; ideas are validated at submission."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aisci_nb.contract.lifecycle import RunStatus, can_transition

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("MONGODB_URL", "MINIO_ENDPOINT", "WORKER_MODE")}
    return subprocess.run([sys.executable, *args], cwd=cwd, env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def test_missing_mongodb_url_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = run([str(ROOT / "worker.py"), "--mode", "experiment"], tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("aisci: configuration error: MONGODB_URL: missing")
    assert "mongodb://" in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("env", "name"), [
    ({"MONGODB_URL": "postgres://x"}, "MONGODB_URL: invalid"),
    ({"MONGODB_URL": "mongodb://h/db", "WORKER_MODE": "turbo"}, "WORKER_MODE: invalid"),
    ({"MONGODB_URL": "mongodb://h/db", "MINIO_ENDPOINT": "h:9000"}, "MINIO_ACCESS_KEY"),
    ({"MONGODB_URL": "mongodb://h/db", "MINIO_SECURE": "maybe"}, "MINIO_SECURE: invalid"),
])
def test_malformed_values_name_the_variable(tmp_path: Path, env: dict, name: str) -> None:
    proc = run([str(ROOT / "worker.py")], tmp_path, **env)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert name in proc.stderr


def test_settings_come_from_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MONGODB_URL=mongodb://127.0.0.1:1/from_dotenv\n")
    code = ("from aisci_nb.settings import load_settings; s = load_settings(); "
            "print(s.db_name, s.runpod_pod_id == load_settings().runpod_pod_id)")
    proc = run(["-c", code], tmp_path)
    assert proc.stdout.split() == ["from_dotenv", "True"], proc.stderr


def test_malformed_idea_is_refused_with_reason(tmp_path: Path) -> None:
    bad = tmp_path / "idea.json"
    bad.write_text(json.dumps({"Name": "x", "Title": "t"}))
    proc = run(["-m", "aisci_nb.ops.cli", "submit", "--title", "t", "--idea-json", str(bad)],
               tmp_path, MONGODB_URL="mongodb://127.0.0.1:1/x")
    assert proc.returncode == 2
    assert "Short Hypothesis: Field required" in proc.stderr
    bad.write_text("{oops")
    proc = run(["-m", "aisci_nb.ops.cli", "submit", "--title", "t", "--idea-json", str(bad)],
               tmp_path, MONGODB_URL="mongodb://127.0.0.1:1/x")
    assert proc.returncode == 2 and "not JSON (line 1" in proc.stderr


def test_lifecycle_allows_only_forward_moves() -> None:
    assert can_transition(RunStatus.QUEUED, RunStatus.SCHEDULED)
    assert can_transition(RunStatus.RUNNING, RunStatus.FAILED)
    assert not can_transition(RunStatus.COMPLETED, RunStatus.RUNNING)
    assert not can_transition(RunStatus.FAILED, RunStatus.CANCELED)
    assert not can_transition(RunStatus.QUEUED, RunStatus.COMPLETED)
