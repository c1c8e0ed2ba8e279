"""Workers that crash, freeze, get canceled, shut down, or lose MongoDB, with real kernels.

The pipeline is `notebooks/tick.ipynb` once per step; each tick of its kernel is a line in a
ledger file (run, step, lease epoch, kernel pid, worker pid, time), which shows exactly when
each step executed where, also for kernels whose worker is gone.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nbformat
import pytest
from pymongo import MongoClient

from aisci_nb.contract.idea import example_idea
from aisci_nb.db import ensure_indexes
from aisci_nb.ops.services import (
    find_mongod,
    free_port,
    launch_mongod,
    mongodb_url,
    pid_alive,
    stop_pid,
)
from aisci_nb.queue.submit import submit_hypothesis

from ..conftest import UI_AUTH, Stack, wait_until

DRIVER = Path(__file__).resolve().parents[1] / "worker_driver.py"
# Short leases so that crashes are noticed in seconds.
QUICK = {"LEASE_S": "2", "LEASE_RENEW_S": "0.5", "CANCEL_CHECK_S": "0.25",
         "REAP_INTERVAL_S": "0.5", "RETRY_BACKOFF_S": "0.2", "RETRY_BACKOFF_MAX_S": "1",
         "STOP_GRACE_S": "2", "POLL_INTERVAL_S": "60"}
TERMINAL = ("COMPLETED", "FAILED", "CANCELED")


@dataclass
class WorkerProc:
    name: str
    proc: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, and the exit code (the worker exits 0 after a clean shutdown)."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


class Workers:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.started: list[WorkerProc] = []

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> WorkerProc:
        log = self.stack.tmp / f"{name}.log"
        full = {**os.environ, **self.stack.env, **QUICK, "RUNPOD_POD_ID": name,
                "WORK_DIR": str(self.stack.tmp / f"work-{name}"), **(env or {})}
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, str(DRIVER), *args], env=full,
                                    cwd=self.stack.tmp, stdout=out, stderr=subprocess.STDOUT)
        worker = WorkerProc(name, proc, log)
        self.started.append(worker)
        return worker


@pytest.fixture
def workers(stack: Stack) -> Iterator[Workers]:
    pool = Workers(stack)
    yield pool
    for w in pool.started:
        if w.proc.poll() is None:
            os.kill(w.pid, signal.SIGCONT)
            stop_pid(w.pid, timeout_s=10)


def ledger(path: Path) -> list[dict]:
    if not path.exists():
        return []
    complete = path.read_text().rpartition("\n")[0]  # a line being written is left for later
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def ticking(path: Path, run_id: str, worker: WorkerProc | None = None) -> dict:
    """The first ledger line of the run's kernel (of `worker`, if given)."""
    return wait_until(lambda: next((t for t in ledger(path) if t["run"] == run_id and (
        worker is None or t["ppid"] == worker.pid)), None), 60, "a ticking kernel")


def tick_idea(**steps: dict) -> dict:
    return {**example_idea(), "test": steps}


def spans(rows: list[tuple[tuple, int, float]]) -> dict[tuple, dict[int, tuple[float, float]]]:
    """(key, epoch, time) rows -> key -> epoch -> (first, last) time."""
    out: dict[tuple, dict[int, tuple[float, float]]] = defaultdict(dict)
    for key, epoch, t in rows:
        first, last = out[key].get(epoch, (t, t))
        out[key][epoch] = (min(first, t), max(last, t))
    return out


def overlaps(by_key: dict[tuple, dict[int, tuple[float, float]]]) -> list[tuple]:
    """Pairs of epochs of one key whose execution intervals intersect."""
    found = []
    for key, epochs in by_key.items():
        ordered = sorted(epochs.items(), key=lambda item: item[1][0])
        for (e1, (_, end1)), (e2, (start2, _)) in itertools.pairwise(ordered):
            if start2 <= end1:
                found.append((key, e1, e2))
    return found


def test_kill_9_mid_step_never_loses_a_run_nor_runs_a_step_twice_at_once(
        stack: Stack, workers: Workers) -> None:
    book = stack.tmp / "ledger.ndjson"
    idea = tick_idea(Stage_1={"ticks": 4, "tick_s": 0.1, "writes": "one"},
                     Stage_2={"ticks": 4, "tick_s": 0.1, "requires": [["Stage_1", "one"]],
                              "writes": "two"})
    run_ids = [submit_hypothesis(stack.db, title=f"k{i}", idea=idea).run_id for i in range(20)]
    env = {"TEST_STEPS": "Stage_1,Stage_2", "AISCI_TEST_LEDGER": str(book), "MAX_ATTEMPTS": "10"}
    live = [workers.spawn(f"k{i}", env=env) for i in range(3)]
    rng = random.Random(9)
    kills, spawned = 0, len(live)
    deadline = time.monotonic() + 300

    def finished() -> int:
        return stack.db.runs.count_documents({"_id": {"$in": run_ids},
                                              "status": {"$in": TERMINAL}})

    while finished() < len(run_ids):
        assert time.monotonic() < deadline, "runs did not finish"
        time.sleep(rng.uniform(0.1, 0.6))
        if kills >= 8:
            continue
        # A worker in the middle of a step right now, in Stage_1 and Stage_2 by turns.
        step = ("Stage_1", "Stage_2")[kills % 2]
        busy = {t["ppid"] for t in ledger(book) if t["t"] > time.time() - 0.3
                and t["step"] == step}
        victims = [w for w in live if w.pid in busy]
        if not victims:
            continue
        victim = rng.choice(victims)
        victim.proc.kill()
        victim.proc.wait()
        kills += 1
        live.remove(victim)
        live.append(workers.spawn(f"k{spawned}", env=env))
        spawned += 1
    for w in live:
        assert w.stop() == 0, w.output()[-3000:]

    runs = {r["_id"]: r for r in stack.db.runs.find({"_id": {"$in": run_ids}})}
    completed = sum(r["status"] == "COMPLETED" for r in runs.values())
    ticks = ledger(book)
    by_ledger = spans([((t["run"], t["step"]), t["epoch"], t["t"]) for t in ticks])
    events = list(stack.db.events.find({"runId": {"$in": run_ids}}))
    by_events = spans([((e["runId"], e["data"]["stage"]), e["leaseEpoch"],
                        e["timestamp"].timestamp()) for e in events
                       if e["type"].startswith("ai.run.stage_") and e.get("leaseEpoch")])
    found = overlaps(by_ledger) + overlaps(by_events)
    retried = [r for r in runs.values() if r["attempt"] > 1]
    resumed = [i for i in run_ids if len(by_ledger[(i, "Stage_1")]) == 1
               and len(by_ledger[(i, "Stage_2")]) > 1]
    print(f"\nkill -9 tally: runs {len(run_ids)}, kills {kills}, completed {completed}, "
          f"retried {len(retried)}, resumed after Stage_1 {len(resumed)}, overlaps {len(found)}")

    assert kills >= 6 and retried and resumed
    assert completed == len(run_ids), [(r["_id"], r["status"]) for r in runs.values()]
    assert found == []
    for run_id, run in runs.items():
        # No step ran again after it was recorded finished (the resume skipped it) ...
        history = [h for h in run["stepHistory"] if h["status"] == "COMPLETED"]
        assert sorted(h["step"] for h in history) == ["Stage_1", "Stage_2"], run["stepHistory"]
        for h in history:
            assert max(by_ledger[(run_id, h["step"])]) == h["epoch"]
        # ... and each kernel ticked under one epoch only.
        kernels = defaultdict(set)
        for t in ticks:
            if t["run"] == run_id:
                kernels[t["pid"]].add(t["epoch"])
        assert all(len(e) == 1 for e in kernels.values())
        # The per-run sequence: unique, and each attempt's numbers above the last one's.
        seqs = sorted((e["seq"], e.get("leaseEpoch") or 0) for e in events
                      if e["runId"] == run_id)
        assert len({s for s, _ in seqs}) == len(seqs)
        assert [ep for _, ep in seqs] == sorted(ep for _, ep in seqs)


def test_frozen_worker_past_its_lease_writes_nothing_and_stops_its_kernel(
        stack: Stack, workers: Workers) -> None:
    book = stack.tmp / "ledger.ndjson"
    run_id = submit_hypothesis(stack.db, title="freeze", idea=tick_idea(
        Stage_1={"ticks": 10, "tick_s": 0.1})).run_id
    env = {"AISCI_TEST_LEDGER": str(book)}
    frozen = workers.spawn("frozen", env=env)
    kernel = ticking(book, run_id, frozen)["pid"]
    os.kill(frozen.pid, signal.SIGSTOP)
    rescuer = workers.spawn("rescuer", env=env)
    wait_until(lambda: stack.db.events.find_one({"runId": run_id, "type": "ai.run.completed"}),
               90, "the rescuer to finish")
    time.sleep(0.5)  # the last projections of the rescuer's events
    done = stack.db.runs.find_one({"_id": run_id})
    assert (done["status"], done["claimedBy"], done["attempt"]) == ("COMPLETED", "rescuer", 2)
    assert pid_alive(kernel)  # only the worker froze; its kernel went on

    with stack.db.runs.watch([{"$match": {"documentKey._id": run_id}}]) as stream:
        os.kill(frozen.pid, signal.SIGCONT)
        wait_until(lambda: not pid_alive(kernel), 15, "the frozen worker to stop its kernel")
        time.sleep(1.0)
        changes = []
        while (change := stream.try_next()) is not None:
            changes.append(change)
    assert changes == []  # not one write to the run after it woke up
    assert "was taken over" in frozen.output()
    assert stack.db.runs.find_one({"_id": run_id}) == done
    reaped = stack.db.events.find_one({"runId": run_id, "type": "ai.run.status_changed"})
    late = list(stack.db.events.find({"runId": run_id, "leaseEpoch": 1,
                                      "receivedAt": {"$gt": reaped["receivedAt"]}}))
    assert all(e.get("stale") for e in late)  # the old epoch's late events never projected
    assert frozen.stop() == 0 and rescuer.stop() == 0


def test_retryable_failure_is_retried_with_backoff_then_failed(
        stack: Stack, workers: Workers) -> None:
    run_id = submit_hypothesis(stack.db, title="flaky", idea=tick_idea(
        Stage_1={"ticks": 1, "raise": "TimeoutError"})).run_id
    worker = workers.spawn("retrier", env={"MAX_ATTEMPTS": "3", "RETRY_BACKOFF_S": "0.5",
                                           "RETRY_BACKOFF_MAX_S": "5"})
    run = wait_until(lambda: (r := stack.db.runs.find_one({"_id": run_id}))
                     and r["status"] == "FAILED" and r, 120, "the run to fail for good")
    assert (run["errorType"], run["attempt"], run["retryCount"]) == ("TIMEOUT", 3, 2)
    history = sorted(run["stepHistory"], key=lambda h: h["startedAt"])
    assert [h["status"] for h in history] == ["FAILED"] * 3
    epochs = [h["epoch"] for h in history]
    assert epochs == sorted(set(epochs)) and epochs[-1] == run["leaseEpoch"]
    # Each retry waited at least its backoff: 0.5 s · 2^(n-1), jittered down to half.
    for n, (before, after) in enumerate(itertools.pairwise(history), start=1):
        assert (after["startedAt"] - before["completedAt"]).total_seconds() >= 0.5 * 2 ** (
            n - 1) * 0.5
    failed = wait_until(lambda: (f := list(stack.db.events.find(
        {"runId": run_id, "type": "ai.run.failed"}).sort("seq", 1))) and len(f) == 3 and f,
        what="three ai.run.failed events")
    assert all(e["data"]["retryable"] and e["data"]["code"] == "TIMEOUT" for e in failed)
    # The re-queued attempts' events are kept but did not fail the run; the last one did.
    assert [bool(e.get("stale")) for e in failed] == [True, True, False]
    assert worker.stop() == 0


def test_cancel_a_running_run_stops_it_within_seconds(stack: Stack, workers: Workers) -> None:
    book = stack.tmp / "ledger.ndjson"
    # Idle first, with a 60 s poll: only the change stream can make it pick the run up soon.
    worker = workers.spawn("cancelee", env={"AISCI_TEST_LEDGER": str(book),
                                            "CANCEL_CHECK_S": "2"})
    wait_until(lambda: "ready" in worker.output(), 30, "the worker to start")
    run_id = submit_hypothesis(stack.db, title="cancel running", idea=tick_idea(
        Stage_1={"ticks": 600, "tick_s": 0.1})).run_id
    kernel = ticking(book, run_id, worker)["pid"]
    time.sleep(1.0)  # a heartbeat or two
    resp = httpx.post(f"{stack.control_plane_url}/api/runs/{run_id}/cancel",
                      headers=UI_AUTH, json={"reason": "changed my mind"})
    assert (resp.status_code, resp.json()["status"]) == (202, "CANCEL_REQUESTED")
    asked = time.monotonic()
    run = wait_until(lambda: (r := stack.db.runs.find_one({"_id": run_id}))
                     and r["status"] == "CANCELED" and r, 20, "the run to be canceled")
    print(f"\ncanceled {time.monotonic() - asked:.2f}s after the request")
    assert run["steps"]["Stage_1"]["status"] == "CANCELED"
    assert not pid_alive(kernel)
    ticks = len(ledger(book))
    time.sleep(1.0)
    assert len(ledger(book)) == ticks < 600  # stopped, long before its end

    key = run["steps"]["Stage_1"]["outputs"]["notebook"]
    nb = nbformat.reads(stack.store().get_bytes(key).decode(), as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("tick 0" in o.get("text", "") for o in outputs)  # the partial notebook
    assert any(o.get("output_type") == "error" for o in outputs)
    canceled = wait_until(lambda: stack.db.events.find_one(
        {"runId": run_id, "type": "ai.run.canceled"}), what="ai.run.canceled")
    assert canceled["data"] == {"run_id": run_id, "by": "owner", "reason": "changed my mind"}
    assert stack.db.events.count_documents({"runId": run_id, "type": "ai.run.heartbeat"}) >= 1
    assert worker.stop() == 0


def test_sigterm_releases_the_run_and_drain_finishes_it(stack: Stack, workers: Workers) -> None:
    book, go = stack.tmp / "ledger.ndjson", stack.tmp / "finish-now"
    run_id = submit_hypothesis(stack.db, title="shutdown", idea=tick_idea(
        Stage_1={"ticks": 1, "writes": "one"},
        Stage_2={"ticks": 600, "tick_s": 0.1, "requires": [["Stage_1", "one"]],
                 "until": str(go)})).run_id
    env = {"TEST_STEPS": "Stage_1,Stage_2", "AISCI_TEST_LEDGER": str(book)}
    first = workers.spawn("leaving", env=env)
    wait_until(lambda: any(t["step"] == "Stage_2" for t in ledger(book)), 60, "Stage_2")
    assert first.stop(timeout=30) == 0
    run = stack.db.runs.find_one({"_id": run_id})
    assert (run["status"], run["claimedBy"], run["attempt"]) == ("QUEUED", None, 1)
    assert run["steps"]["Stage_1"]["status"] == "COMPLETED"  # kept for whoever resumes
    assert run["steps"]["Stage_2"]["status"] == "RELEASED"
    assert "released" in first.output()

    second = workers.spawn("draining", "--drain", env=env)
    wait_until(lambda: any(t["step"] == "Stage_2" and t["ppid"] == second.pid
                           for t in ledger(book)), 60, "Stage_2 on the second worker")
    second.proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert second.proc.poll() is None  # draining: still at work
    go.touch()
    assert second.proc.wait(timeout=60) == 0  # the run finished first, then a clean exit
    run = stack.db.runs.find_one({"_id": run_id})
    assert run["status"] == "COMPLETED" and run["claimedBy"] == "draining"
    steps_by_epoch = {(t["step"], t["epoch"]) for t in ledger(book)}
    assert {e for s, e in steps_by_epoch if s == "Stage_1"} == {1}  # never re-executed
    assert {e for s, e in steps_by_epoch if s == "Stage_2"} == {1, run["leaseEpoch"]}


def test_worker_rides_out_a_mongod_restart(stack: Stack, workers: Workers, tmp_path: Path
                                            ) -> None:
    mongod, port = find_mongod(), free_port()
    data, log = tmp_path / "mongo", tmp_path / "mongod.log"
    launched = launch_mongod(mongod, port, data, log)
    try:
        url = mongodb_url(port, "restart_test")
        client: MongoClient = MongoClient(url, tz_aware=True)
        db = client.get_default_database()
        ensure_indexes(db)
        book, go = tmp_path / "ledger.ndjson", tmp_path / "finish-now"
        run_id = submit_hypothesis(db, title="outage", idea=tick_idea(
            Stage_1={"ticks": 600, "tick_s": 0.1, "until": str(go)})).run_id
        worker = workers.spawn("survivor", env={"MONGODB_URL": url, "LEASE_S": "30",
                                                "LEASE_RENEW_S": "1",
                                                "AISCI_TEST_LEDGER": str(book)})
        ticking(book, run_id, worker)
        stop_pid(launched.pid)
        down = time.time()
        time.sleep(0.5)
        launched = launch_mongod(mongod, port, data, log)
        up = time.time()
        time.sleep(0.5)
        go.touch()
        run = wait_until(lambda: (r := db.runs.find_one({"_id": run_id}))
                         and r["status"] in TERMINAL and r, 90, "the run to finish")
        assert (run["status"], run["attempt"], run["leaseEpoch"]) == ("COMPLETED", 1, 1)
        times = [t["t"] for t in ledger(book)]
        assert min(times) < down and max(times) > up  # the step ran through the outage
        assert worker.stop() == 0
        client.close()
    finally:
        stop_pid(launched.pid)
