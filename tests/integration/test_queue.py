"""The queue against the real mongod: claims, order, reaping, retries, ideation, cancel."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pymongo import MongoClient

from aisci_nb.contract.idea import example_idea
from aisci_nb.db import utcnow
from aisci_nb.ops.services import find_mongod, free_port, stop_pid
from aisci_nb.queue import claims as queue
from aisci_nb.queue.pickup import Pickup, has_change_streams
from aisci_nb.queue.reaper import sweep
from aisci_nb.queue.submit import submit_hypothesis
from aisci_nb.settings import WorkerMode
from aisci_nb.storage.store import open_store
from aisci_nb.worker.loop import Worker

from ..conftest import API_KEY, UI_AUTH, Stack, wait_until

DRIVER = Path(__file__).resolve().parents[1] / "claim_driver.py"
AUTH = {"authorization": f"Bearer {API_KEY}"}


def test_eight_workers_claim_500_runs_exactly_once_per_attempt(stack: Stack) -> None:
    hypothesis = submit_hypothesis(stack.db, title="many runs", idea=example_idea())
    stack.db.runs.delete_many({})
    # One run in five fails its first attempt (retryably) and must be claimed once more.
    docs = [queue.new_run_document(hypothesis.hypothesis_id, priority=int(i % 5 == 0))
            for i in range(500)]
    stack.db.runs.insert_many(docs)
    run_ids = {d["_id"] for d in docs}
    retried = {d["_id"] for d in docs if d["priority"] == 1}
    env = {**os.environ, **stack.env, "RETRY_BACKOFF_S": "0", "REAP_INTERVAL_S": "60"}
    procs = [subprocess.Popen([sys.executable, str(DRIVER)], cwd=stack.tmp, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**env, "RUNPOD_POD_ID": f"pod-{i}"}) for i in range(8)]
    claims: Counter[tuple[str, int]] = Counter()
    epochs: Counter[tuple[str, int]] = Counter()
    by_worker: dict[str, int] = {}
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
        rows = [line.split() for line in out.splitlines()]
        by_worker[f"pod-{i}"] = len(rows)
        claims.update((run_id, int(attempt)) for run_id, attempt, _ in rows)
        epochs.update((run_id, int(epoch)) for run_id, _, epoch in rows)

    assert max(claims.values()) == 1 and max(epochs.values()) == 1  # never twice per attempt
    assert {run_id for run_id, _ in claims} == run_ids  # none lost
    assert {run_id for run_id, attempt in claims if attempt == 2} == retried
    assert len(claims) == len(run_ids) + len(retried)
    runs = {r["_id"]: r for r in stack.db.runs.find({"_id": {"$in": list(run_ids)}})}
    assert all(r["status"] == "COMPLETED" for r in runs.values())
    assert all(r["attempt"] == (2 if i in retried else 1) for i, r in runs.items())
    assert all(r["retryCount"] == 1 and r["lastError"]["code"] == "TIMEOUT"
               for i, r in runs.items() if i in retried)
    assert sum(1 for n in by_worker.values() if n > 0) >= 4  # the work was really shared


def test_claim_order_is_priority_then_age_within_region_and_visibility(stack: Stack) -> None:
    idea = example_idea()

    def run(title: str, priority: int = 0, region: str | None = None) -> str:
        return submit_hypothesis(stack.db, title=title, idea=idea, priority=priority,
                                 region=region).run_id

    low = run("low")
    eu = run("eu", priority=5, region="eu")
    us = run("us", priority=9, region="us")
    low2 = run("low2")
    later = run("delayed", priority=10)
    stack.db.runs.update_one({"_id": later}, {"$set": {"visibleAt": utcnow() + timedelta(hours=1)}})

    def take(region: str | None) -> str | None:
        claim = queue.claim_next(stack.db, "p", region=region)
        return claim.run_id if claim else None

    assert [take("eu"), take("eu"), take("eu"), take("eu")] == [eu, low, low2, None]
    assert take(None) == us  # a worker without a region takes any region
    assert take(None) is None  # the delayed run waits out its retry delay
    assert queue.next_visible_at(stack.db, queue.RUNS) is not None
    stack.db.runs.update_one({"_id": later}, {"$set": {"visibleAt": utcnow()}})
    assert take("eu") == later
    doc = stack.db.runs.find_one({"_id": eu})
    assert (doc["status"], doc["claimedBy"], doc["leaseEpoch"], doc["attempt"]) == (
        "SCHEDULED", "p", 1, 1)
    # The claim reserved this epoch's block of event sequence numbers above the enqueue event.
    assert doc["seqCeiling"] == queue.SEQ_BLOCK
    assert queue.Claim(doc, doc["leaseEpoch"]).seq_floor == 1


def test_concurrent_reapers_take_each_expired_run_back_once(stack: Stack) -> None:
    idea = example_idea()
    ids = [submit_hypothesis(stack.db, title=f"x{i}", idea=idea).run_id for i in range(30)]
    kept = submit_hypothesis(stack.db, title="renewed", idea=idea).run_id
    claims = {}
    for _ in range(31):
        claim = queue.claim_next(stack.db, "crashed-pod", lease_s=0.05)
        claims[claim.run_id] = claim
    spent = ids[:10]  # these used their last attempt
    stack.db.runs.update_many({"_id": {"$in": spent}}, {"$set": {"attempt": 3}})
    assert queue.renew(stack.db, claims[kept], lease_s=60) is not None
    wait_until(lambda: utcnow() > claims[ids[-1]].run["leaseExpiresAt"], 5, "expiry")

    policy = queue.RetryPolicy(max_attempts=3, backoff_s=5, backoff_max_s=60)
    barrier = threading.Barrier(4)
    results: list[list[queue.HandBack]] = []

    def reaper(i: int) -> None:
        client: MongoClient = MongoClient(stack.env["MONGODB_URL"], tz_aware=True)
        db = client.get_default_database()
        barrier.wait()
        results.append(sweep(db, [queue.RUNS], policy, source=f"reaper://{i}"))
        client.close()

    threads = [threading.Thread(target=reaper, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    taken = Counter(h.doc_id for r in results for h in r)
    assert set(taken) == set(ids) and max(taken.values()) == 1
    for run_id in ids:
        doc = stack.db.runs.find_one({"_id": run_id})
        assert doc["leaseEpoch"] == 2  # fenced: the crashed holder's epoch 1 writes nothing
        if run_id in spent:
            assert (doc["status"], doc["errorType"]) == ("FAILED", "LEASE_LOST")
        else:
            assert (doc["status"], doc["attempt"], doc["claimedBy"]) == ("QUEUED", 2, None)
            delay = (doc["visibleAt"] - doc["updatedAt"]).total_seconds()
            assert 5 * 0.5 - 0.01 <= delay <= 5  # the backoff after attempt 1, jittered
        events = list(stack.db.events.find({"runId": run_id, "source": {"$regex": "^reaper"}}))
        assert [e["type"] for e in events] == (
            ["ai.run.failed"] if run_id in spent else ["ai.run.status_changed"])
        assert events[0]["seq"] > 1 and events[0]["leaseEpoch"] == 2
    assert stack.db.runs.find_one({"_id": kept})["status"] == "SCHEDULED"
    assert not queue.set_status(stack.db, claims[ids[-1]], "RUNNING")  # the old holder


def test_hybrid_worker_serves_ideation_first_then_runs(stack: Stack) -> None:
    idea = example_idea()
    run = submit_hypothesis(stack.db, title="run first in time", idea=idea)
    request = queue.new_ideation_request(run.hypothesis_id, reflections=2)
    stack.db.ideation_requests.insert_one(request)
    orphan = queue.new_ideation_request("no-such-hypothesis")
    stack.db.ideation_requests.insert_one(orphan)

    ideation_only = Worker(stack.settings.model_copy(update={"worker_mode": WorkerMode.IDEATION}),
                           stack.db, open_store(stack.settings), steps=())
    assert ideation_only.run_forever(max_runs=1) == 1  # takes an ideation request, not the run
    assert stack.db.runs.find_one({"_id": run.run_id})["status"] == "QUEUED"

    hybrid = Worker(stack.settings.model_copy(update={"worker_mode": WorkerMode.HYBRID}), stack.db,
                    open_store(stack.settings), steps=())
    assert hybrid.run_forever(exit_when_idle=True) == 2
    done = stack.db.ideation_requests.find_one({"_id": request["_id"]})
    bad = stack.db.ideation_requests.find_one({"_id": orphan["_id"]})
    ran = stack.db.runs.find_one({"_id": run.run_id})
    assert {done["status"], bad["status"]} == {"COMPLETED", "FAILED"}
    assert done["leaseEpoch"] == 1 and done["leaseExpiresAt"] is None
    assert [i["Name"] for i in done["ideas"]] == ["width_noise_double_descent"]  # scripted
    assert "not found" in bad["error"]
    assert ran["status"] == "COMPLETED"
    assert max(done["claimedAt"], bad["claimedAt"]) < ran["claimedAt"]  # ideation first
    hyp = stack.db.hypotheses.find_one({"_id": run.hypothesis_id})
    assert hyp["ideation"]["status"] == "COMPLETED" and hyp["ideation"]["ideas"] == done["ideas"]
    assert hyp["ideaJson"] == done["ideas"][0] != idea
    generated = wait_until(lambda: stack.db.events.find_one({"type": "ai.ideation.generated"}),
                           what="ai.ideation.generated")
    assert generated["data"]["request_id"] == request["_id"]
    assert generated["data"]["count"] == 1


def test_cancel_a_queued_run_through_the_api_and_the_cli(stack: Stack, tmp_path: Path) -> None:
    idea = example_idea()
    first = submit_hypothesis(stack.db, title="cancel me", idea=idea).run_id
    second = submit_hypothesis(stack.db, title="cancel me too", idea=idea).run_id
    base = stack.control_plane_url
    assert httpx.post(f"{base}/api/runs/{first}/cancel").status_code == 401
    # A worker's ingest key cannot cancel: that is a person's (an operator's) call.
    assert httpx.post(f"{base}/api/runs/{first}/cancel", headers=AUTH).status_code == 401
    resp = httpx.post(f"{base}/api/runs/{first}/cancel", headers=UI_AUTH,
                      json={"reason": "wrong idea"})
    assert (resp.status_code, resp.json()["status"]) == (200, "CANCELED")
    doc = stack.db.runs.find_one({"_id": first})
    assert doc["status"] == "CANCELED" and doc["canceledAt"] is not None
    event = stack.db.events.find_one({"runId": first, "type": "ai.run.canceled"})
    assert event["data"]["by"] == "owner" and event["data"]["reason"] == "wrong idea"
    audit = stack.db.audit.find_one({"action": "cancel", "target": first})
    assert audit["user"] == "owner" and audit["detail"]["outcome"] == "CANCELED"
    assert event["seq"] == 2  # after the enqueue event
    again = httpx.post(f"{base}/api/runs/{first}/cancel", headers=UI_AUTH)
    assert again.status_code == 409 and "CANCELED" in again.json()["detail"]
    assert httpx.post(f"{base}/api/runs/nope/cancel", headers=UI_AUTH).status_code == 404

    env = {**os.environ, **stack.env}
    cli = subprocess.run([sys.executable, "-m", "aisci_nb.ops.cli", "cancel", second, "--reason",
                          "dup"], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert f"run {second} CANCELED" in cli.stdout
    assert stack.db.runs.find_one({"_id": second})["status"] == "CANCELED"
    missing = subprocess.run([sys.executable, "-m", "aisci_nb.ops.cli", "cancel", "nope"], env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no run nope" in missing.stderr
    assert queue.claim_next(stack.db, "p") is None  # canceled runs are never claimed


def test_without_a_replica_set_an_idle_worker_polls_and_says_so_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    proc = subprocess.Popen([str(find_mongod()), "--port", str(port), "--bind_ip", "127.0.0.1",
                             "--dbpath", str(tmp_path), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client: MongoClient = MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true",
                                          tz_aware=True, serverSelectionTimeoutMS=20_000)
        db = client["standalone"]
        assert not has_change_streams(db)
        pickup = Pickup(db, [queue.RUNS], poll_interval_s=0.2, use_change_streams=True,
                        stopping=threading.Event())
        later = threading.Timer(0.5, db.runs.insert_one, [queue.new_run_document("h1")])
        later.start()
        with caplog.at_level(logging.INFO, logger="aisci.pickup"):
            first = pickup.next_claim(lambda: queue.claim_next(db, "p"))
            db.runs.insert_one(queue.new_run_document("h2"))
            second = pickup.next_claim(lambda: queue.claim_next(db, "p"))
        assert first is not None and second is not None
        assert {first.run["hypothesisId"], second.run["hypothesisId"]} == {"h1", "h2"}
        said = [r.getMessage() for r in caplog.records if "polling" in r.getMessage()]
        assert len(said) == 1 and "not a replica set" in said[0]
        client.close()
    finally:
        stop_pid(proc.pid)
        proc.wait(timeout=30)
