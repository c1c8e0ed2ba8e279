"""Claims against the real mongod: several worker processes never take one run twice."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from aisci_nb.idea import example_idea
from aisci_nb.queue import claim_next
from aisci_nb.submit import submit_hypothesis

from .conftest import Stack

DRIVER = Path(__file__).with_name("claim_driver.py")


def test_four_workers_claim_200_runs_exactly_once(stack: Stack) -> None:
    idea = example_idea()
    run_ids = {submit_hypothesis(stack.db, title=f"r{i}", idea=idea).run_id for i in range(200)}
    procs = [
        subprocess.Popen([sys.executable, str(DRIVER)], cwd=stack.tmp, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**os.environ, **stack.env, "RUNPOD_POD_ID": f"pod-{i}"})
        for i in range(4)
    ]
    claimed: Counter[str] = Counter()
    by_worker: dict[str, int] = {}
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        ids = out.split()
        by_worker[f"pod-{i}"] = len(ids)
        claimed.update(ids)

    assert set(claimed) == run_ids
    assert max(claimed.values()) == 1
    runs = list(stack.db.runs.find({"_id": {"$in": list(run_ids)}}))
    assert all(r["status"] == "COMPLETED" and r["attempt"] == 1 for r in runs)
    owners = Counter(r["claimedBy"] for r in runs)
    assert owners == Counter(by_worker)
    assert sum(1 for n in by_worker.values() if n > 0) >= 2  # the work was really shared


def test_claim_order_is_priority_then_age(stack: Stack) -> None:
    idea = example_idea()
    low = submit_hypothesis(stack.db, title="low", idea=idea, priority=0).run_id
    high = submit_hypothesis(stack.db, title="high", idea=idea, priority=5).run_id
    low2 = submit_hypothesis(stack.db, title="low2", idea=idea, priority=0).run_id
    order = [claim_next(stack.db, "p").run_id for _ in range(3)]
    assert order == [high, low, low2]
    assert claim_next(stack.db, "p") is None
    run = stack.db.runs.find_one({"_id": high})
    assert (run["status"], run["claimedBy"], run["leaseEpoch"]) == ("SCHEDULED", "p", 1)
