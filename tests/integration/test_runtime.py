"""The notebook runtime under the real Worker: per-cell events, live notebooks in S3, the
failure taxonomy (one code each, on `ai.run.failed`), and stopping a step from outside."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import nbformat
import pytest

from aisci_nb.contract.idea import example_idea
from aisci_nb.ops.services import pid_alive
from aisci_nb.queue import claims
from aisci_nb.queue.submit import submit_hypothesis
from aisci_nb.runtime.execute import Limits, StepHandle, execute_step
from aisci_nb.storage.store import S3Store
from aisci_nb.worker.loop import Worker
from aisci_nb.worker.pipelines import Step

from ..conftest import Stack, wait_until

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def faults_step(**parameters: object) -> Step:
    return Step("Stage_1", "faults.ipynb", "fault injection", parameters)


PIPELINE_1 = Step("Stage_1", "pipeline/step_1.ipynb", "write data")
PIPELINE_2 = Step("Stage_2", "pipeline/step_2.ipynb", "check data",
                  requires=(("Stage_1", "data"),))


def make_worker(stack: Stack, steps: tuple[Step, ...], store=None, **settings) -> Worker:
    # One attempt: these tests look at how a step fails, not at the queue's retries.
    cfg = stack.settings.model_copy(update={"max_attempts": 1, **settings})
    return Worker(cfg, stack.db, store or stack.store(), notebooks_dir=NOTEBOOKS, steps=steps)


def submit(stack: Stack) -> str:
    return submit_hypothesis(stack.db, title="runtime", idea=example_idea()).run_id


def run_steps(stack: Stack, steps: tuple[Step, ...], store=None, **settings) -> dict:
    run_id = submit(stack)
    worker = make_worker(stack, steps, store, **settings)
    assert worker.run_forever(max_runs=1, exit_when_idle=True) == 1
    return stack.db.runs.find_one({"_id": run_id})


def events_of(stack: Stack, run_id: str, event_type: str) -> list[dict]:
    return list(stack.db.events.find({"runId": run_id, "type": event_type}).sort("seq", 1))


def failed_event(stack: Stack, run_id: str) -> dict:
    return wait_until(lambda: stack.db.events.find_one({"runId": run_id,
                                                        "type": "ai.run.failed"}),
                      what="ai.run.failed")["data"]


def uploaded(stack: Stack, run_id: str, step: str = "Stage_1") -> nbformat.NotebookNode:
    key = f"runs/{run_id}/notebooks/{step}.ipynb"
    return nbformat.reads(stack.store().get_bytes(key).decode(), as_version=4)


def cell_with_label(nb: nbformat.NotebookNode, label: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if f"papermill_description={label}" in c.source)


def test_cells_report_events_and_progress(stack: Stack) -> None:
    run = run_steps(stack, (faults_step(fault="none"),))
    assert run["status"] == "COMPLETED"
    run_id = run["_id"]
    nb = uploaded(stack, run_id)
    wait_until(lambda: len(events_of(stack, run_id, "ai.run.cell_completed")) == 5,
               what="cell events")
    started = events_of(stack, run_id, "ai.run.cell_started")
    completed = events_of(stack, run_id, "ai.run.cell_completed")
    # Every code cell (parameters, injected, setup, fault, finish), named by its cell id.
    assert [e["data"]["cell_index"] for e in started] == [1, 2, 3, 4, 5]
    for event in started + completed:
        index = event["data"]["cell_index"]
        assert event["data"]["cell_id"] == nb.cells[index]["id"]
        assert event["data"]["stage"] == "Stage_1"
    assert [e["data"].get("label") for e in completed][2:] == ["setup", "fault", "finish"]
    assert all(e["data"]["duration_s"] >= 0 for e in completed)
    progress = [e["data"]["progress"] for e in events_of(stack, run_id, "ai.run.stage_progress")]
    assert progress == sorted(set(progress)) and progress[-1] == 1.0
    for a, b in zip(started, completed, strict=True):  # each cell starts, then completes
        assert a["seq"] < b["seq"]


def test_running_notebook_is_uploaded_live(stack: Stack) -> None:
    run_id = submit(stack)
    worker = make_worker(stack, (faults_step(fault="sleep", seconds=4.0),), live_notebook_s=0.5)
    key = f"runs/{run_id}/notebooks/Stage_1.ipynb"
    store = stack.store()
    seen_running: list[nbformat.NotebookNode] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if store.exists(key):
                nb = nbformat.reads(store.get_bytes(key).decode(), as_version=4)
                cell = cell_with_label(nb, "fault")
                if cell.metadata.papermill["status"] == "running" and any(
                        "sleeping" in o.get("text", "") for o in cell.outputs):
                    seen_running.append(nb)
                    return
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        worker.run_forever(max_runs=1, exit_when_idle=True)
    finally:
        done.set()
        watcher.join()
    assert seen_running, "no live upload showed the running cell's output"
    final = uploaded(stack, run_id)
    assert cell_with_label(final, "fault").metadata.papermill["status"] == "completed"
    live = [e for e in events_of(stack, run_id, "ai.artifact.registered")
            if e["data"].get("live")]
    assert live and live[0]["data"]["key"] == key


FAULTS = [
    # id, step parameters, settings, code, retryable, failing cell's label
    ("exception", {"fault": "raise"}, {}, "ZeroDivisionError", False, "fault"),
    ("oom", {"fault": "oom"}, {}, "OOMError", False, "fault"),
    ("kernel-died", {"fault": "exit"}, {}, "KERNEL_DIED", False, "fault"),
    ("cell-timeout", {"fault": "sleep", "seconds": 60.0}, {"cell_timeout_s": 1.5},
     "TIMEOUT", True, "fault"),
    ("step-timeout", {"fault": "sleep", "seconds": 60.0}, {"step_timeout_s": 4},
     "TIMEOUT", True, "fault"),
    ("stderr-traceback", {"fault": "print_tb"}, {}, "OUTPUT_ERROR", False, "fault"),
    ("shown-not-raised", {"fault": "show_tb"}, {}, "OUTPUT_ERROR", False, "fault"),
]


@pytest.mark.parametrize(("parameters", "settings", "code", "retryable", "label"),
                         [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_failure_codes(stack: Stack, parameters: dict, settings: dict, code: str,
                       retryable: bool, label: str | None) -> None:
    started = time.monotonic()
    run = run_steps(stack, (faults_step(**parameters),), **settings)
    assert time.monotonic() - started < 45  # timeouts really cut the 60 s sleep short
    assert run["status"] == "FAILED"
    assert run["errorType"] == code
    data = failed_event(stack, run["_id"])
    assert (data["code"], data["retryable"], data["stage"]) == (code, retryable, "Stage_1")
    step = run["steps"]["Stage_1"]
    assert step["status"] == "FAILED" and step["error"]["code"] == code
    nb = uploaded(stack, run["_id"])  # the executed notebook is there, failed or not
    if label is not None:
        cell = cell_with_label(nb, label)
        assert step["error"]["cellId"] == cell["id"] == data["cell_id"]
        failed_cells = events_of(stack, run["_id"], "ai.run.cell_failed")
        if code != "OUTPUT_ERROR":
            assert [e["data"]["cell_id"] for e in failed_cells] == [cell["id"]]
            assert failed_cells[0]["data"]["code"] == code


def test_kernel_start_timeout(stack: Stack, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    slow = tmp_path / "slow-site"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text("import time\ntime.sleep(10)\n")
    monkeypatch.setenv("PYTHONPATH", str(slow))  # the kernel inherits it; a slow start
    run = run_steps(stack, (faults_step(),), kernel_start_timeout_s=1)
    assert run["errorType"] == "TIMEOUT"
    assert "did not start within 1s" in run["errorMessage"]
    data = failed_event(stack, run["_id"])
    assert data["retryable"] is True and data["stage"] == "Stage_1"


def test_storage_error_in_the_worker(stack: Stack) -> None:
    env = stack.env
    missing = S3Store(env["MINIO_ENDPOINT"], env["MINIO_ACCESS_KEY"], env["MINIO_SECRET_KEY"],
                      "no-such-bucket")
    run = run_steps(stack, (faults_step(),), store=missing)
    assert run["errorType"] == "STORAGE_ERROR"
    assert "could not upload the executed notebook" in run["errorMessage"]
    assert failed_event(stack, run["_id"])["retryable"] is False
    assert "notebook" not in run["steps"]["Stage_1"]["outputs"]


def test_storage_error_in_the_kernel(stack: Stack) -> None:
    # The kernel holds no S3 credentials: what it registers goes through its outbox, which
    # the worker uploads; an upload that fails fails the step with the kernel's artifact key.
    env = stack.env
    missing = S3Store(env["MINIO_ENDPOINT"], env["MINIO_ACCESS_KEY"], env["MINIO_SECRET_KEY"],
                      "no-such-bucket")
    run = run_steps(stack, (PIPELINE_1,), store=missing)
    assert run["errorType"] == "STORAGE_ERROR"
    assert failed_event(stack, run["_id"])["code"] == "STORAGE_ERROR"
    failed = wait_until(lambda: stack.db.events.find_one(
        {"runId": run["_id"], "type": "ai.artifact.failed"}), what="ai.artifact.failed")
    assert failed["data"]["key"] == f"runs/{run['_id']}/artifacts/Stage_1/data.json"
    assert failed["data"]["code"] == "STORAGE_ERROR"


@pytest.mark.parametrize(("steps", "name"), [
    ((Step("Stage_1", "pipeline/step_1.ipynb", "x", {"colour": "red"}),), "colour"),
    ((Step("Stage_1", "pipeline/step_1.ipynb", "x", {"limit": "3"}),), "limit"),
    ((PIPELINE_2,), "inputs"),  # Stage_2 alone: nothing produced its inputs
], ids=["unknown", "ill-typed", "missing"])
def test_invalid_parameter(stack: Stack, steps: tuple[Step, ...], name: str) -> None:
    run = run_steps(stack, steps)
    assert run["errorType"] == "INVALID_PARAMETER"
    assert f"parameter {name!r}" in run["errorMessage"]
    data = failed_event(stack, run["_id"])
    assert data["code"] == "INVALID_PARAMETER" and data["retryable"] is False
    step = next(iter(run["steps"].values()))
    assert step["outputs"] == {}  # no kernel ran, so no executed notebook
    assert events_of(stack, run["_id"], "ai.run.cell_started") == []


def test_cancel_interrupts_then_stops_the_kernel(stack: Stack) -> None:
    run_id = submit(stack)
    worker = make_worker(stack, (faults_step(fault="sleep", seconds=120.0),))
    thread = threading.Thread(target=worker.run_forever, kwargs={"max_runs": 1})
    thread.start()
    try:
        wait_until(lambda: any(e["data"].get("label") == "fault"
                               for e in events_of(stack, run_id, "ai.run.cell_started")),
                   timeout_s=60, what="the sleeping cell")
        pid = worker.active_step.kernel_pid
        assert pid and pid_alive(pid)
        asked = time.monotonic()
        assert worker.interrupt("CANCELED", "canceled by the test")
        thread.join(timeout=60)
        assert time.monotonic() - asked < 15
    finally:
        worker.interrupt()
        thread.join(timeout=60)
    assert not pid_alive(pid)
    run = stack.db.runs.find_one({"_id": run_id})
    assert run["errorType"] == "CANCELED"
    assert failed_event(stack, run_id)["message"] == "canceled by the test"
    # Interrupted (KeyboardInterrupt in the cell), not merely killed.
    outputs = cell_with_label(uploaded(stack, run_id), "fault").outputs
    assert any(o.get("ename") == "KeyboardInterrupt" for o in outputs)


def test_kernel_ignoring_the_interrupt_is_killed(tmp_path: Path) -> None:
    handle = StepHandle()

    def on_event(event_type: str, data: dict) -> None:
        if event_type == "ai.run.cell_started" and data.get("label") == "fault":
            threading.Timer(1.0, handle.cancel, ("LEASE_LOST", "lease taken over")).start()

    result = execute_step(NOTEBOOKS / "faults.ipynb", tmp_path / "out.ipynb",
                          {"fault": "stubborn"}, cwd=tmp_path, handle=handle,
                          on_event=on_event, limits=Limits(cancel_grace_s=1.0))
    assert result.error is not None and result.error.code == "LEASE_LOST"
    assert result.duration_s < 30
    assert not pid_alive(result.kernel_pid)
    nb = nbformat.read(result.output_path, as_version=4)
    text = "".join(o.get("text", "") for o in cell_with_label(nb, "fault").outputs)
    assert "interrupt ignored" in text  # it was interrupted first, and then killed


def test_lease_loss_is_not_reported_as_a_failure(stack: Stack) -> None:
    run_id = submit(stack)
    worker = make_worker(stack, (faults_step(fault="sleep", seconds=120.0),),
                         cancel_check_s=0.25)
    claim = claims.claim_next(stack.db, worker.pod_id)
    thread = threading.Thread(target=worker.process, args=(claim,))
    thread.start()
    try:
        wait_until(lambda: (h := worker.active_step) is not None and h.kernel_pid,
                   timeout_s=60, what="a running kernel")
        pid = worker.active_step.kernel_pid
        # Another worker takes the run over (what a reaper and a new claim do to the epoch).
        stack.db.runs.update_one({"_id": run_id}, {"$inc": {"leaseEpoch": 2}})
        thread.join(timeout=60)
        assert not thread.is_alive()
    finally:
        worker.interrupt()
        thread.join(timeout=60)
    assert not pid_alive(pid)  # the worker noticed and stopped its kernel
    run = stack.db.runs.find_one({"_id": run_id})
    assert run["steps"]["Stage_1"]["status"] == "RUNNING"  # the old holder wrote nothing more
    assert "error" not in run["steps"]["Stage_1"]
    assert run["status"] == "RUNNING"  # left for the lease's new holder
    assert stack.db.events.find_one({"runId": run_id, "type": "ai.run.failed"}) is None
