"""`aisci_nb.init`: one run-info parameter in, one context per kernel out."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

import aisci_nb
from aisci_nb.notebook import bootstrap
from aisci_nb.notebook.outputs import outputs_manifest


def emitter_threads() -> int:
    return sum(t.name == "aisci-emitter" and t.is_alive() for t in threading.enumerate())


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    ctx = bootstrap.current()
    if ctx is not None:
        ctx.close(timeout_s=1)


def debug_events(cwd: Path) -> list[dict]:
    path = cwd / bootstrap.DEBUG_EVENTS_FILE
    return [json.loads(line) for line in path.open()] if path.exists() else []


def test_no_run_info_is_a_local_run(in_tmp: Path, capfd: pytest.CaptureFixture) -> None:
    ctx = aisci_nb.init(None, stage="Stage_2")
    assert (ctx.run_id, ctx.stage, ctx.idea, ctx.debug) == ("debug-run", "Stage_2", {}, True)
    ctx.log("hello")
    ctx.events.emitter.flush(timeout_s=5)
    assert [e["type"] for e in debug_events(in_tmp)] == ["ai.run.log"]
    assert capfd.readouterr().err == ""  # the debug sink is quiet: no red noise in JupyterLab


def test_rerunning_the_init_cell_reuses_the_context() -> None:
    before = emitter_threads()
    info = {"run_id": "r1", "idea": {"Title": "t"}}
    first = aisci_nb.init(info, stage="Stage_1")
    for _ in range(5):
        assert aisci_nb.init(dict(info), stage="Stage_1") is first
    assert emitter_threads() == before + 1


def test_changed_run_info_cleanly_replaces_the_context() -> None:
    before = emitter_threads()
    first = aisci_nb.init({"run_id": "r1"}, stage="Stage_1")
    second = aisci_nb.init({"run_id": "r2"}, stage="Stage_1")
    third = aisci_nb.init({"run_id": "r2"}, stage="Stage_2")
    assert first.closed and second.closed and not third.closed
    assert not first.events.emitter._thread.is_alive()
    assert emitter_threads() == before + 1
    assert bootstrap.current() is third


def test_a_closed_context_is_rebuilt() -> None:
    first = aisci_nb.init(None, stage="Stage_1")
    first.close()
    assert bootstrap.current() is None
    again = aisci_nb.init(None, stage="Stage_1")
    assert again is not first and not again.closed


def test_one_exit_hook_however_often_init_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    registered: list = []
    monkeypatch.setattr(bootstrap, "_hooked", False)
    monkeypatch.setattr(bootstrap.atexit, "register", registered.append)
    for i in range(4):
        aisci_nb.init({"run_id": f"r{i}"}, stage="Stage_1")
    assert registered == [bootstrap._close_current]


def test_unknown_run_info_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="evnts_url"):
        aisci_nb.init({"evnts_url": "http://x"}, stage="Stage_1")


def test_outputs_manifest_is_fixed_at_init(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = aisci_nb.init(None, stage="Stage_1")
    elsewhere = in_tmp / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a notebook that changes directory after init
    (elsewhere / "table.csv").write_text("a\n1\n")
    stored = ctx.register_artifact("table.csv", name="table")
    assert json.loads(outputs_manifest(in_tmp, "Stage_1").read_text()) == {"table": stored.key}
    assert not outputs_manifest(elsewhere, "Stage_1").exists()
    assert stored.uri.startswith((in_tmp / bootstrap.DEBUG_ARTIFACTS_DIR).as_uri())


def test_spool_and_its_bound_come_from_the_run_info(in_tmp: Path) -> None:
    ctx = aisci_nb.init({"run_id": "r1", "events_url": "http://127.0.0.1:9",
                         "spool_dir": str(in_tmp / "spool"), "spool_max_bytes": 4096},
                        stage="Stage_1")
    spool = ctx.events.emitter.spool
    assert spool is not None and spool.root == in_tmp / "spool" and spool.max_bytes == 4096
    ctx.close(timeout_s=0.2)  # nobody listens on port 9: the event stays in the spool
