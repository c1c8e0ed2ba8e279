"""The control plane is down for 60 s in the middle of a run: every event arrives, none twice."""

from __future__ import annotations

import time
from pathlib import Path

from aisci_nb.contract.idea import example_idea
from aisci_nb.contract.tracing import trace_id_of
from aisci_nb.ops.services import free_port, launch_control_plane, stop_pid
from aisci_nb.queue.submit import submit_hypothesis

from ..conftest import Stack

OUTAGE_S = 60


def final_seq(work_dir: Path, run_id: str) -> int:
    return int.from_bytes((work_dir / run_id / "events.seq").read_bytes()[:8], "little")


def test_control_plane_outage_loses_nothing(stack: Stack) -> None:
    idea = example_idea()
    idea["experiment"] = {**idea["experiment"], "epochs": 400}  # a few seconds of training
    run_id = submit_hypothesis(stack.db, title="outage", idea=idea).run_id
    port = free_port()
    env = {**stack.env, "CONTROL_PLANE_URL": f"http://127.0.0.1:{port}",
           "EMIT_FLUSH_TIMEOUT_S": "3"}
    cp = launch_control_plane(port, env, stack.tmp / "cp1.log")
    worker = None
    try:
        worker = stack.popen_worker("--max-runs", "1", extra_env=env)
        deadline = time.monotonic() + 120
        while not stack.db.events.find_one({"runId": run_id, "type": "ai.run.started"}):
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.05)
        stop_pid(cp.pid)  # the control plane goes away mid-run
        down_at = time.monotonic()
        assert worker.wait(timeout=240) == 0, stack.worker_log()

        # The work went on: the run finished in MongoDB, its events wait in the spool.
        run = stack.db.runs.find_one({"_id": run_id})
        assert run["status"] == "COMPLETED"
        n = final_seq(Path(env["WORK_DIR"]), run_id)
        before = stack.db.events.count_documents({"runId": run_id})
        assert before < n, "events were delivered although the control plane was down"
        spooled = list((Path(env["WORK_DIR"]) / "spool").glob("*/*.ndjson"))
        assert spooled and any(p.stat().st_size for p in spooled)

        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        cp = launch_control_plane(port, env, stack.tmp / "cp2.log")
        again = stack.run_worker("--exit-when-idle", extra_env=env)  # adopts the spool
        assert again.returncode == 0, again.stderr[-3000:]
    finally:
        if worker and worker.poll() is None:
            worker.kill()
        stop_pid(cp.pid)

    events = list(stack.db.events.find({"runId": run_id}).sort("seq", 1))
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, n + 1)), "every event arrived, each once"
    assert len({e["_id"] for e in events}) == len(events)
    assert not [p for p in (Path(env["WORK_DIR"]) / "spool").glob("*/*.ndjson")
                if p.stat().st_size]
    run = stack.db.runs.find_one({"_id": run_id})
    assert run["lastEventSeq"] == n
    assert run["currentStage"]["progress"] == 1.0
    assert run["metrics"]["Stage_1"]["val_accuracy"] > 0.5
    assert stack.db.artifacts.count_documents({"runId": run_id}) == 1
    # One run, one trace: the worker's and the kernel's events share the trace id.
    traces = {trace_id_of(e.get("traceparent")) for e in events if e["type"] != "ai.run.enqueued"}
    assert traces == {run["traceId"]}
    print(f"outage tally: {n} events in the run, {before} stored before the control plane "
          f"came back, {len(events)} stored after, 0 twice")
