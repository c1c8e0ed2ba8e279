"""The sandbox: each node that breaks a limit or reaches for what it must not ends buggy
with the right reason, and the caller carries on."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from aisci_nb.research.treesearch.sandbox import (
    Isolation,
    Limits,
    detect_isolation,
    run_code,
    truncate,
)

CANARY = "canary-secret-4f1c9a"


def test_clean_run_keeps_its_files(tmp_path: Path) -> None:
    r = run_code("open('out.txt', 'w').write('x'); print('hello')", tmp_path / "n")
    assert r.ok and r.returncode == 0 and r.output == "hello\n"
    assert (tmp_path / "n" / "out.txt").read_text() == "x"


def test_memory_limit(tmp_path: Path) -> None:
    r = run_code("block = bytearray(3 * 1024**3)", tmp_path / "n", Limits(memory_mb=512))
    assert (r.reason, r.exc_type) == ("memory", "MemoryError")


def test_memory_watchdog_when_rlimit_cannot_apply(tmp_path: Path) -> None:
    # With a GPU the address-space limit is off; a watchdog enforces the resident limit.
    code = "import time\nb = bytearray(1024**3)\nb[::4096] = b'1' * len(b[::4096])\n" \
           "time.sleep(30)"
    r = run_code(code, tmp_path / "n", Limits(wall_s=60, memory_mb=256), gpu="")
    assert r.reason == "memory" and r.exec_time_s < 30


def test_time_limit(tmp_path: Path) -> None:
    r = run_code("import time\nprint('start', flush=True)\ntime.sleep(60)", tmp_path / "n",
                 Limits(wall_s=1.5))
    assert (r.reason, r.exc_type) == ("time", "TimeoutError")
    assert "start" in r.output and r.exec_time_s < 30


def test_cpu_limit(tmp_path: Path) -> None:
    r = run_code("while True:\n    pass", tmp_path / "n", Limits(wall_s=60, cpu_s=1))
    assert r.reason == "cpu"


def test_environment_is_allow_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AISCI_TEST_CANARY", "MINIO_SECRET_KEY", "OPENAI_API_KEY", "MONGODB_URL"):
        monkeypatch.setenv(name, CANARY)
    code = ("import os\nfound = [k for k, v in os.environ.items() if 'canary' in v]\n"
            "print(sorted(os.environ))\n"
            "if found:\n    print('LEAK', found)\n"
            "secret = os.environ['AISCI_TEST_CANARY']")
    r = run_code(code, tmp_path / "n")
    assert (r.reason, r.exc_type) == ("exception", "KeyError")
    assert "LEAK" not in r.output and CANARY not in r.output + (r.exc_info or "")


def test_no_network(tmp_path: Path) -> None:
    kind, _ = detect_isolation()
    if kind is Isolation.NONE:
        pytest.skip("this machine allows no network isolation (logged); limits only")
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted: list[object] = []
    server.settimeout(15)
    t = threading.Thread(target=lambda: accepted.append(_accept(server)), daemon=True)
    t.start()
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=5)"
    r = run_code(code, tmp_path / "n", Limits(wall_s=30))
    socket.create_connection(("127.0.0.1", port)).close()  # proves the server was listening
    t.join(20)
    server.close()
    assert r.reason == "exception" and r.exc_type in ("ConnectionRefusedError", "OSError",
                                                      "TimeoutError")
    assert accepted == ["host"]  # only this test's own connection arrived


def _accept(server: socket.socket) -> str:
    conn, _ = server.accept()
    conn.close()
    return "host"


def test_exit_codes_and_truncation(tmp_path: Path) -> None:
    r = run_code("import sys\nsys.exit(3)", tmp_path / "n")
    assert r.reason == "exception" and r.returncode == 3
    r = run_code("print('x' * 100_000)", tmp_path / "m")
    assert r.ok and len(r.output) < 20_000 and "characters cut" in r.output
    assert truncate("abc") == "abc"
    assert os.environ.get("AISCI_TEST_CANARY") is None


@pytest.mark.parametrize("kind", [Isolation.UNSHARE, Isolation.NONE])
def test_fallbacks_run_code_and_keep_limits(kind: Isolation, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Where bubblewrap is refused: `unshare -n` (still no network), else limits only."""
    from aisci_nb.research.treesearch import sandbox

    flags: tuple[str, ...] = ()
    if kind is Isolation.UNSHARE:
        flags = next((f for f in (("-n",), ("-r", "-n")) if sandbox._probe(
            ["unshare", *f, "true"])), ())
        if not flags:
            pytest.skip("this machine allows no network namespace")
    monkeypatch.setattr(sandbox, "detect_isolation", lambda: (kind, flags))
    ok = run_code("print('ran')", tmp_path / "ok")
    assert ok.ok and ok.output == "ran\n"
    mem = run_code("b = bytearray(3 * 1024**3)", tmp_path / "mem", Limits(memory_mb=512))
    assert mem.reason == "memory"
    net = run_code("import socket\nprint(socket.if_nameindex())", tmp_path / "net")
    assert net.ok
    if kind is Isolation.UNSHARE:  # a fresh namespace holds the loopback device only
        assert net.output.strip() == "[(1, 'lo')]"
