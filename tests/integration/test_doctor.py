"""`aisci doctor` against the real services: healthy, and broken one setting at a time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aisci_nb.ops.doctor import Context, Status, run_checks
from aisci_nb.ops.services import free_port
from aisci_nb.settings import Settings
from aisci_nb.worker.telemetry import gpu_sample

from ..conftest import API_KEY, S3_SECRET, Stack

ROOT = Path(__file__).resolve().parents[2]
NETWORK = ["env", "mongodb", "s3", "control-plane"]


def clean_environ() -> dict[str, str]:
    """The test process's environment without any aisci setting in it."""
    names = {n.upper() for n in Settings.model_fields}
    return {k: v for k, v in os.environ.items() if k.upper() not in names}


def doctor_cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aisci_nb.ops.cli", "doctor", "--timeout", "3",
                           *args], env={**clean_environ(), **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=180)


def by_check(results) -> dict[str, object]:
    return {r.check: r for r in results}


def test_healthy_setup_passes_every_check(stack: Stack) -> None:
    proc = doctor_cli(stack.env, stack.tmp)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    status = {line.split()[1]: line.split()[0] for line in lines[:-1]}
    for name in ("env", "mongodb", "s3", "control-plane", "torch", "latex", "jupyter"):
        assert status[name] == "PASS", proc.stdout
    # No GPU is a warning, not a failure: CPU-only pods work.
    assert status["gpu"] == ("WARN" if gpu_sample() is None else "PASS")
    assert status["llm-keys"] == "WARN"  # none set here: only the offline provider
    assert "FAIL" not in proc.stdout
    assert lines[-1].startswith(f"doctor: {7 if gpu_sample() is None else 8} ok,")
    assert S3_SECRET not in proc.stdout and API_KEY not in proc.stdout
    # The probes clean up after themselves.
    assert stack.db.doctor.count_documents({}) == 0
    assert not list(stack.store().client.list_objects(stack.env["MINIO_BUCKET"], "doctor/",
                                                      recursive=True))


@pytest.mark.parametrize(("change", "failing", "says"), [
    ({"MONGODB_URL": "mongodb://127.0.0.1:{port}/aisci_test"}, "mongodb", "no answer from"),
    ({"CONTROL_PLANE_URL": "http://127.0.0.1:{port}"}, "control-plane", "no answer from"),
    ({"AISCI_API_KEY": "not-the-key"}, "control-plane", "our key was refused (401)"),
    ({"MINIO_BUCKET": "no-such-bucket"}, "s3", "bucket 'no-such-bucket' at 127.0.0.1"),
    ({"MINIO_SECRET_KEY": "wrong-secret"}, "s3", "rejected the credentials"),
    ({"MINIO_ENDPOINT": "127.0.0.1:{port}"}, "s3", "no answer from 127.0.0.1"),
])
def test_each_broken_setting_is_named(stack: Stack, change: dict, failing: str,
                                      says: str) -> None:
    env = {**stack.env, **{k: v.format(port=free_port()) for k, v in change.items()}}
    results = by_check(run_checks(Context.gather(env, None, timeout_s=2), NETWORK))
    assert results[failing].status is Status.FAIL
    assert says in results[failing].detail
    assert results[failing].fix
    others = {name: r.status for name, r in results.items() if name != failing}
    assert set(others.values()) == {Status.PASS}, others


def test_missing_key_names_the_variable_and_the_refusal(stack: Stack) -> None:
    env = {k: v for k, v in stack.env.items() if k != "AISCI_API_KEY"}
    results = by_check(run_checks(Context.gather(env, None, timeout_s=2), NETWORK))
    assert results["env"].status is Status.FAIL
    assert results["env"].detail == "missing AISCI_API_KEY"
    assert results["control-plane"].status is Status.FAIL
    assert "no key sent (401)" in results["control-plane"].detail


def test_broken_setup_exits_1_with_each_failure_on_its_line(stack: Stack) -> None:
    env = {**stack.env, "AISCI_API_KEY": "not-the-key", "MINIO_BUCKET": "no-such-bucket",
           "MONGODB_URL": f"mongodb://127.0.0.1:{free_port()}/aisci_test"}
    proc = doctor_cli(env, stack.tmp, "--only", "env", "--only", "mongodb", "--only", "s3",
                      "--only", "control-plane")
    print(proc.stdout)
    assert proc.returncode == 1
    lines = {line.split()[1]: line for line in proc.stdout.splitlines()[:-1]}
    assert list(lines) == NETWORK  # one line per check, in order
    assert lines["env"].startswith("PASS")
    for name in ("mongodb", "s3", "control-plane"):
        assert lines[name].startswith("FAIL") and " — fix: " in lines[name]
    assert "not-the-key" not in proc.stdout
    assert proc.stdout.splitlines()[-1] == "doctor: 1 ok, 0 warning(s), 3 failing"


def test_a_pod_needs_s3_a_workstation_is_warned(tmp_path: Path) -> None:
    env = {"MONGODB_URL": "mongodb://127.0.0.1:1/x", "CONTROL_PLANE_URL": "http://127.0.0.1:1",
           "AISCI_API_KEY": "k", "ARTIFACTS_DIR": str(tmp_path / "artifacts")}
    workstation = by_check(run_checks(Context.gather(env, None), ["env", "s3"]))
    assert workstation["env"].status is Status.PASS
    assert workstation["s3"].status is Status.WARN
    assert str(tmp_path / "artifacts") in workstation["s3"].detail
    pod = by_check(run_checks(Context.gather(env, None, pod=True), ["env"]))
    assert pod["env"].status is Status.FAIL
    assert pod["env"].detail == ("missing MINIO_ENDPOINT, MINIO_ACCESS_KEY, MINIO_SECRET_KEY, "
                                 "MINIO_BUCKET")


def test_values_come_from_env_file_and_bad_ones_are_named(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("MONGODB_URL=mongodb://127.0.0.1:1/x\nCONTROL_PLANE_URL=http://h:1\n"
                        "AISCI_API_KEY=k\nMINIO_SECURE=maybe\n")
    results = by_check(run_checks(Context.gather({}, env_file), ["env", "mongodb"]))
    assert results["env"].status is Status.FAIL
    assert results["env"].detail.startswith("MINIO_SECURE: invalid")
    assert str(env_file) in (results["env"].fix or "")
    assert results["mongodb"].detail == "not checked: the settings are invalid"


def test_missing_tex_is_a_failure_for_workers_that_write_papers(tmp_path: Path) -> None:
    # A PATH with Python on it but no TeX: what a pod looks like before init_runpod.sh.
    env = {"PATH": str(Path(sys.executable).parent), "MONGODB_URL": "mongodb://h/x"}
    proc = doctor_cli(env, tmp_path, "--only", "latex")
    assert proc.returncode == 1
    assert proc.stdout.startswith("FAIL  latex         pdflatex and bibtex not found")
    assert "apt-get install texlive-latex-base" in proc.stdout
    ideation = doctor_cli({**env, "WORKER_MODE": "ideation"}, tmp_path, "--only", "latex")
    assert ideation.returncode == 0
    assert ideation.stdout.startswith("WARN  latex")


def test_tex_compiles_a_document_with_a_citation(tmp_path: Path) -> None:
    results = run_checks(Context.gather({"MONGODB_URL": "mongodb://h/x"}, None), ["latex"])
    assert results[0].status is Status.PASS, results[0].line()
    assert "pdfTeX" in results[0].detail


def test_mongodb_url_is_shown_without_its_password() -> None:
    env = {"MONGODB_URL": f"mongodb://ops:hunter2@127.0.0.1:{free_port()}/?replicaSet=rs0",
           "CONTROL_PLANE_URL": "http://127.0.0.1:1", "AISCI_API_KEY": "k"}
    [result] = run_checks(Context.gather(env, None, timeout_s=0.5), ["mongodb"])
    assert result.status is Status.FAIL
    assert "hunter2" not in result.line() and "ops" not in result.line()
    assert "/ai_scientist in 0.5s" in result.detail  # the default database, named
