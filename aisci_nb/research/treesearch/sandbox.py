"""Generated code runs here: its own process and working directory, a wall-clock limit, a
memory limit, a CPU-time limit, an environment built from an allow-list (so API keys, S3
secrets and the database URL never reach it) and no network where the machine allows it.

Network isolation, detected once per process and cached: bubblewrap (`bwrap
--unshare-net`, also a private /tmp and PID namespace), else `unshare -n` (as root) or
`unshare -rn` (user namespaces), else resource limits only, with a warning logged.
Memory: RLIMIT_AS on CPU-only nodes (an allocation past it fails in the code); with a GPU
(CUDA reserves huge address space) a watchdog kills the node when its resident memory
passes the limit. A node over a limit is a result with a reason, never an exception.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

log = logging.getLogger(__name__)

RUNNER = Path(__file__).resolve().parent / "_runner.py"
CODE_FILE = "runfile.py"
EXC_FILE = ".aisci_exception.json"
OUTPUT_FILE = ".aisci_output.txt"
# Only these reach the code; everything else (keys, secrets, URLs) is left behind.
ENV_ALLOW = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH", "CUDA_HOME",
             "CUDA_PATH", "SSL_CERT_FILE")
HEAD_CHARS, TAIL_CHARS = 4_000, 12_000
ALLOC_FAILURES = ("can't allocate memory", "out of memory", "cannot allocate memory")


class Isolation(StrEnum):
    BWRAP = "bwrap"
    UNSHARE = "unshare"
    NONE = "none"


@dataclass(frozen=True)
class Limits:
    wall_s: float = 600.0
    memory_mb: int | None = 8192
    cpu_s: float | None = None
    threads: int = 1  # OMP/MKL threads per node: parallel nodes share the cores


@dataclass
class RunResult:
    returncode: int | None
    output: str
    exec_time_s: float
    reason: str | None  # None when it ran cleanly; else exception, time, memory, cpu, exit
    exc_type: str | None = None
    exc_info: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def _probe(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.cache
def detect_isolation() -> tuple[Isolation, tuple[str, ...]]:
    """The strongest isolation this machine allows, and the unshare flags if that is it."""
    true = shutil.which("true") or "/bin/true"
    bwrap = shutil.which("bwrap")
    if bwrap and _probe([bwrap, "--unshare-net", "--die-with-parent", "--ro-bind", "/", "/",
                         "--dev", "/dev", "--proc", "/proc", true]):
        log.info("sandbox: bubblewrap with no network")
        return Isolation.BWRAP, ()
    unshare = shutil.which("unshare")
    if unshare:
        for flags in (("-n",), ("-r", "-n")):
            if _probe([unshare, *flags, true]):
                log.info("sandbox: unshare %s (no network)", " ".join(flags))
                return Isolation.UNSHARE, flags
    log.warning("sandbox: neither bubblewrap nor network namespaces are allowed here; "
                "generated code runs with resource limits only and CAN reach the network")
    return Isolation.NONE, ()


@functools.cache
def detect_gpus() -> tuple[str, ...]:
    """GPU indices from nvidia-smi; none on a CPU-only machine."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return ()
    try:
        out = subprocess.run([smi, "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(x.strip() for x in out.stdout.splitlines() if x.strip().isdigit())


def truncate(text: str, head: int = HEAD_CHARS, tail: int = TAIL_CHARS) -> str:
    """The beginning and the end, which is where setup and errors show."""
    if len(text) <= head + tail:
        return text
    cut = len(text) - head - tail
    return f"{text[:head]}\n... [{cut} characters cut] ...\n{text[-tail:]}"


def sandbox_env(workdir: Path, limits: Limits, gpu: str | None,
                extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in ENV_ALLOW if k in os.environ}
    threads = str(limits.threads)
    env.update({
        "HOME": str(workdir), "TMPDIR": str(workdir / "tmp"), "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": str(workdir / ".mpl"), "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
        "CUDA_VISIBLE_DEVICES": gpu if gpu is not None else "",
    })
    env.update(extra or {})
    return env


def _tmp_rebinds(python: str) -> list[str]:
    """The sandbox's /tmp is an empty tmpfs; what the node needs from the real /tmp (an
    interpreter, its packages, this runner — a checkout or venv that lives there, as in CI)
    is bound back read-only."""
    wanted = {Path(python).parent, Path(sys.prefix), Path(sys.base_prefix), RUNNER.parent,
              *(Path(p) for p in sys.path if p)}
    found = sorted({p.resolve() for p in wanted if p.exists()})
    tmp = Path("/tmp").resolve()
    binds: list[Path] = []
    for path in found:
        if path.is_relative_to(tmp) and path != tmp and not any(
                path.is_relative_to(b) for b in binds):
            binds.append(path)
    return [arg for b in binds for arg in ("--ro-bind", str(b), str(b))]


def command(workdir: Path, limits_json: str, gpu: str | None,
            python: str = sys.executable) -> list[str]:
    inner = [python, "-I", str(RUNNER), limits_json, CODE_FILE, EXC_FILE]
    kind, flags = detect_isolation()
    if kind is Isolation.BWRAP:
        dev = ["--dev-bind", "/dev", "/dev"] if gpu is not None else ["--dev", "/dev"]
        return [shutil.which("bwrap") or "bwrap", "--unshare-net", "--unshare-pid",
                "--unshare-ipc", "--die-with-parent", "--ro-bind", "/", "/", *dev,
                "--proc", "/proc", "--tmpfs", "/tmp", *_tmp_rebinds(python),
                "--bind", str(workdir), str(workdir), "--chdir", str(workdir), "--", *inner]
    if kind is Isolation.UNSHARE:
        return [shutil.which("unshare") or "unshare", *flags, "--", *inner]
    return inner


def _rss_bytes(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_code(code: str, workdir: Path, limits: Limits = Limits(), *, gpu: str | None = None,
             env: dict[str, str] | None = None) -> RunResult:
    """Run `code` as `workdir/runfile.py` under the limits; never raises for what the code
    does (errors, limits), only for a workdir it cannot write."""
    workdir = workdir.resolve()
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    (workdir / CODE_FILE).write_text(code)
    exc_path = workdir / EXC_FILE
    exc_path.unlink(missing_ok=True)
    use_rlimit_as = gpu is None and limits.memory_mb is not None
    limits_json = json.dumps({
        "memory_bytes": limits.memory_mb * 2**20 if use_rlimit_as else None,
        "cpu_s": limits.cpu_s})
    out_path = workdir / OUTPUT_FILE
    started = time.monotonic()
    with out_path.open("wb") as out:
        proc = subprocess.Popen(command(workdir, limits_json, gpu), cwd=workdir,
                                env=sandbox_env(workdir, limits, gpu, env), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        over_memory = threading.Event()
        if limits.memory_mb is not None and not use_rlimit_as:
            threading.Thread(target=_watch_memory, daemon=True,
                             args=(proc, limits.memory_mb * 2**20, over_memory)).start()
        timed_out = False
        try:
            proc.wait(timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(proc)
    elapsed = time.monotonic() - started
    output = truncate(out_path.read_text(errors="replace"))
    exc = _read_exc(exc_path)
    rc = proc.returncode
    if timed_out:
        return RunResult(rc, output, elapsed, "time", "TimeoutError",
                         f"ran past its wall-clock limit of {limits.wall_s:g} s")
    if over_memory.is_set():
        return RunResult(rc, output, elapsed, "memory", "MemoryError",
                         f"resident memory passed its limit of {limits.memory_mb} MiB")
    if exc:
        etype, info = exc.get("exc_type"), exc.get("exc_info")
        reason = "exception"
        if etype == "MemoryError" or any(m in (info or "").lower() for m in ALLOC_FAILURES):
            reason = "memory"
        elif etype == "CpuTimeExceeded":
            reason = "cpu"
        return RunResult(rc, output, elapsed, reason, etype, info)
    if rc in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return RunResult(rc, output, elapsed, "cpu", "CpuTimeExceeded",
                         f"killed at its CPU-time limit of {limits.cpu_s:g} s")
    if rc in (-signal.SIGKILL, 128 + signal.SIGKILL):
        return RunResult(rc, output, elapsed, "memory", "MemoryError",
                         "killed (SIGKILL), most likely out of memory")
    if rc != 0:
        return RunResult(rc, output, elapsed, "exit", "NonZeroExit", f"exited with {rc}")
    return RunResult(rc, output, elapsed, None)


def _read_exc(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _watch_memory(proc: subprocess.Popen, limit: int, flag: threading.Event) -> None:
    while proc.poll() is None:
        if _rss_bytes(proc.pid) > limit:
            flag.set()
            _kill(proc)
            return
        time.sleep(0.1)
