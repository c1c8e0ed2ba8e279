"""The pod scripts: shellcheck, init_runpod.sh's checks and idempotence, start_worker.sh's
restarts with backoff, log rotation and clean stop. Each runs for real, in a temporary HOME
and a temporary copy of the repository's pod files."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aisci_nb.ops.services import pid_alive, stop_pid
from aisci_nb.settings import Settings

from ..conftest import Stack

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["init_runpod.sh", "start_worker.sh", ".ci/run", "scripts/system-deps.sh"]
POD_FILES = ["init_runpod.sh", "start_worker.sh", "environment.yml", "pyproject.toml",
             "worker.py"]
POD_VARIABLES = ["MONGODB_URL", "CONTROL_PLANE_URL", "AISCI_API_KEY", "MINIO_ENDPOINT",
                 "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_BUCKET"]


def clean_environ(**extra: str) -> dict[str, str]:
    names = {n.upper() for n in Settings.model_fields}
    env = {k: v for k, v in os.environ.items()
           if k.upper() not in names and not k.startswith("AISCI_")}
    return {**env, "AISCI_PYTHON": sys.executable, **extra}


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the files a pod runs, so the scripts' `.env` and logs land in tmp_path."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in POD_FILES:
        shutil.copy2(ROOT / name, repo / name)
    (tmp_path / "home").mkdir()
    return repo


def test_scripts_are_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed: make test installs it (scripts/system-deps.sh)")
    proc = subprocess.run(["shellcheck", *SCRIPTS], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


# -- init_runpod.sh -----------------------------------------------------------------------


def init(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    home = repo.parent / "home"
    return subprocess.run([str(repo / "init_runpod.sh"), "--skip-satisfied", *args],
                          env=clean_environ(HOME=str(home), **env), cwd=repo,
                          capture_output=True, text=True, timeout=120)


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every file under the roots with its content, mode and modification time."""
    out = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            st = path.lstat()
            data = path.read_bytes() if path.is_file() else b""
            out[str(path)] = (data, stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    return out


def require_tex() -> None:
    missing = [t for t in ("pdflatex", "bibtex", "pdftotext") if shutil.which(t) is None]
    if missing:  # --skip-satisfied would run apt-get from a test otherwise
        pytest.fail(f"{', '.join(missing)} missing: apt-get install texlive-latex-base "
                    "poppler-utils (make test does: scripts/system-deps.sh)")


def test_init_names_each_missing_variable_and_starts_nothing(checkout: Path) -> None:
    require_tex()
    (checkout / ".env").write_text("MONGODB_URL=mongodb://127.0.0.1:1/ai_scientist\n")
    proc = init(checkout)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    named = proc.stderr.splitlines()[0]
    for name in POD_VARIABLES[1:]:
        assert name in named, proc.stderr
    assert "MONGODB_URL" not in named
    assert "init: error: .env is not complete" in proc.stderr
    assert not (checkout / "worker.log").exists()  # no worker was started


def test_init_twice_changes_nothing_the_second_time(checkout: Path) -> None:
    require_tex()
    home = checkout.parent / "home"
    (home / ".bashrc").write_text("# the user's own line\n")
    env_file = checkout / ".env"
    env_file.write_text("".join(f"{n}={v}\n" for n, v in zip(POD_VARIABLES, [
        "mongodb://10.0.0.5:27017/ai_scientist", "http://10.0.0.5:8000", "pod-key",
        "10.0.0.5:9000", "access", "secret", "aisci"], strict=True)))
    env_file.chmod(0o644)

    first = init(checkout, "--no-start")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "conda skipped" in first.stdout and "apt skipped" in first.stdout
    assert "added the environment" in first.stdout
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600  # it holds secrets
    bashrc = (home / ".bashrc").read_text()
    assert bashrc.startswith("# the user's own line\n")
    assert f'export PATH="{Path(sys.executable).parent}:$PATH"' in bashrc

    before = snapshot(home, checkout)
    second = init(checkout, "--no-start")
    assert second.returncode == 0, second.stdout + second.stderr
    assert snapshot(home, checkout) == before
    assert "already activates the environment" in second.stdout
    assert "made it readable" not in second.stdout
    assert (home / ".bashrc").read_text().count("# >>> aisci") == 1


def test_init_starts_the_worker_and_ctrl_c_stops_it(checkout: Path, stack: Stack) -> None:
    require_tex()
    (checkout / ".env").write_text("".join(f"{k}={v}\n" for k, v in stack.env.items()))
    proc = subprocess.Popen(
        [str(checkout / "init_runpod.sh"), "--skip-satisfied", "--mode", "experiment"],
        env=clean_environ(HOME=str(checkout.parent / "home"), RUNPOD_POD_ID="pod-init"),
        cwd=checkout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    log = checkout / "worker.log"
    try:
        deadline = time.monotonic() + 60
        while "worker pod-init ready" not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, log.read_text() if log.exists() else "no log"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl+C reaches the terminal's whole group
        assert proc.wait(timeout=30) == 0
    finally:
        stop_pid(proc.pid)
    text = log.read_text()
    assert "starting pod pod-init" in text and "--mode experiment" in text
    assert "stopped (worker exit code" in text


# -- start_worker.sh ----------------------------------------------------------------------


def fake_worker(tmp_path: Path, body: str) -> Path:
    """A stand-in for worker.py that records each start (time, pid, args) and then does `body`."""
    path = tmp_path / "fake_worker.sh"
    path.write_text("#!/usr/bin/env bash\n"
                    f'echo "$(date +%s.%N) $$ $RUNPOD_POD_ID $*" >> "{tmp_path}/starts"\n'
                    f"{body}\n")
    path.chmod(0o755)
    return path


def start_worker(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "start_worker.sh"), *args],
                          env=clean_environ(AISCI_LOG_FILE=str(tmp_path / "worker.log"), **env),
                          capture_output=True, text=True, timeout=60)


def starts(tmp_path: Path) -> list[list[str]]:
    return [line.split() for line in (tmp_path / "starts").read_text().splitlines()]


def test_crashing_worker_is_restarted_with_growing_backoff(tmp_path: Path) -> None:
    worker = fake_worker(tmp_path, 'echo "boom"; exit 3')
    proc = start_worker(tmp_path, "--mode", "experiment", "--region", "eu", "--max-restarts", "3",
                        "--", str(worker), AISCI_BACKOFF_START_S="0.2", AISCI_BACKOFF_MAX_S="0.5")
    assert proc.returncode == 3
    runs = starts(tmp_path)
    assert len(runs) == 4  # the first start and three restarts
    assert all(r[3:] == ["--mode", "experiment", "--region", "eu"] for r in runs)
    assert len({r[2] for r in runs}) == 1  # one pod id across restarts
    assert len({r[1] for r in runs}) == 4  # four processes
    gaps = [float(b[0]) - float(a[0]) for a, b in itertools.pairwise(runs)]
    delays = [0.2, 0.4, 0.5]  # doubled, then capped
    assert all(gap >= delay for gap, delay in zip(gaps, delays, strict=True)), gaps
    log = (tmp_path / "worker.log").read_text()
    assert log.count("boom") == 4
    for delay in ("0.2s", "0.4s", "0.5s"):
        assert f"exit code 3); restarting in {delay}" in log
    assert "3 restart(s) done, giving up" in log
    assert proc.stdout == ""  # not a terminal: the log file only


@pytest.mark.parametrize(("code", "says"), [(0, "worker finished"), (2, "configuration error")])
def test_clean_exit_and_config_error_are_not_restarted(tmp_path: Path, code: int,
                                                       says: str) -> None:
    worker = fake_worker(tmp_path, f"exit {code}")
    proc = start_worker(tmp_path, "--", str(worker), AISCI_BACKOFF_START_S="0.1")
    assert proc.returncode == code
    assert len(starts(tmp_path)) == 1
    assert says in (tmp_path / "worker.log").read_text()


def test_log_rotates_at_its_size_limit(tmp_path: Path) -> None:
    worker = fake_worker(tmp_path, 'pad=$(printf "x%.0s" $(seq 1 60)); '
                         'for i in $(seq 1 3000); do printf "line %05d %s\\n" "$i" "$pad"; done')
    proc = start_worker(tmp_path, "--", str(worker), AISCI_LOG_MAX_BYTES="40000",
                        AISCI_LOG_BACKUPS="2")
    assert proc.returncode == 0
    logs = sorted(p.name for p in tmp_path.glob("worker.log*"))
    assert logs == ["worker.log", "worker.log.1", "worker.log.2"]
    for name in logs:
        assert (tmp_path / name).stat().st_size <= 40000
    newest = (tmp_path / "worker.log").read_text()
    assert "line 03000" in newest and "worker finished" in newest
    oldest_kept = (tmp_path / "worker.log.2").read_text().splitlines()
    assert "line 00001" not in "\n".join(oldest_kept)  # dropped with the oldest backup


def test_sigterm_stops_worker_and_script(tmp_path: Path) -> None:
    worker = fake_worker(tmp_path, "exec sleep 300")
    proc = subprocess.Popen([str(ROOT / "start_worker.sh"), "--", str(worker)],
                            env=clean_environ(AISCI_LOG_FILE=str(tmp_path / "worker.log")),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "starts").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        worker_pid = int(starts(tmp_path)[0][1])
        assert pid_alive(worker_pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        stop_pid(proc.pid)
    assert not pid_alive(worker_pid)
    assert len(starts(tmp_path)) == 1  # stopping is not a crash: no restart
    assert f"stopping worker pid {worker_pid}" in (tmp_path / "worker.log").read_text()
