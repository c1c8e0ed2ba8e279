"""Claim throughput: 8 worker processes against one process issuing raw find_one_and_update.

Ways to drain the same queue of N runs on one mongod:
- baseline: one process, a bare `find_one_and_update` (status QUEUED -> SCHEDULED) in a loop;
- the same bare loop in 8 processes: what contention on the head of the queue costs anyone;
- `claims.claim_next` from 8 processes: the real claim (visibility, region, lease, epoch,
  sequence block, one atomic pipeline update);
- 8 real `Worker` processes with no step notebooks: claim plus the whole per-run path (lease
  keeper, status writes, events to an in-memory sink).
Each is checked to have claimed every run exactly once.

    python bench/bench_claims.py [--runs 4000] [--procs 8]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from collections import Counter
from pathlib import Path

from pymongo import MongoClient, ReturnDocument

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import private_mongod, quiet_worker

from aisci_nb.contract.idea import example_idea
from aisci_nb.queue import claims


def fill(url: str, n: int) -> None:
    db = MongoClient(url).get_default_database()
    db.runs.delete_many({})
    db.hypotheses.replace_one({"_id": "bench"}, {"title": "bench", "ideaJson": example_idea()},
                              upsert=True)
    db.runs.insert_many([claims.new_run_document("bench") for _ in range(n)])


def raw_loop(url: str, pod: str, start: mp.Event, out: mp.Queue) -> None:
    db = MongoClient(url).get_default_database()
    start.wait()
    claimed = []
    while doc := db.runs.find_one_and_update(
            {"status": "QUEUED"}, {"$set": {"status": "SCHEDULED", "claimedBy": pod}},
            sort=[("priority", -1), ("createdAt", 1)], return_document=ReturnDocument.AFTER,
            projection={"_id": 1}):
        claimed.append(doc["_id"])
    out.put((claimed, time.monotonic()))


def claim_loop(url: str, pod: str, start: mp.Event, out: mp.Queue) -> None:
    db = MongoClient(url, tz_aware=True).get_default_database()
    start.wait()
    claimed = []
    while claim := claims.claim_next(db, pod):
        claimed.append(claim.run_id)
    out.put((claimed, time.monotonic()))


def worker_loop(url: str, pod: str, start: mp.Event, out: mp.Queue, root: str) -> None:
    from aisci_nb.settings import Settings
    from aisci_nb.storage.store import LocalStore

    settings = Settings(_env_file=None, mongodb_url=url, runpod_pod_id=pod,
                        work_dir=Path(root) / "work", reap_interval_s=3600)
    db = MongoClient(url, tz_aware=True).get_default_database()
    worker = quiet_worker(settings, db, LocalStore(Path(root) / "artifacts"), steps=())
    claimed = []
    start.wait()
    while claim := worker.claim():
        worker.process(claim)
        claimed.append(claim.run_id)
    out.put((claimed, time.monotonic()))


def drain(target, url: str, procs: int, n: int, *extra: object) -> float:
    """Claims per second of `procs` processes running `target` until the queue is empty."""
    fill(url, n)
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    children = [ctx.Process(target=target, args=(url, f"pod-{i}", start, out, *extra))
                for i in range(procs)]
    for c in children:
        c.start()
    time.sleep(3)  # let every process import and connect before the clock starts
    began = time.monotonic()
    start.set()
    results = [out.get(timeout=600) for _ in children]
    for c in children:
        c.join()
    ended = max(t for _, t in results)
    counts = Counter(run_id for ids, _ in results for run_id in ids)
    if len(counts) != n or max(counts.values()) != 1:
        raise SystemExit(f"{target.__name__}: {len(counts)} of {n} runs claimed, "
                         f"max {max(counts.values())} times")
    return n / (ended - began)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=4000)
    p.add_argument("--procs", type=int, default=8)
    args = p.parse_args()
    with private_mongod("bench_claims") as (url, root):
        raw = drain(raw_loop, url, 1, args.runs)
        raw_many = drain(raw_loop, url, args.procs, args.runs)
        claims = drain(claim_loop, url, args.procs, args.runs)
        workers = drain(worker_loop, url, args.procs, args.runs // 4, str(root))
    print(f"\nclaims per second, {args.runs} runs, one mongod")
    rows = [("raw find_one_and_update, 1 process", raw),
            (f"raw find_one_and_update, {args.procs} processes", raw_many),
            (f"claims.claim_next, {args.procs} processes", claims),
            (f"Worker (no steps), {args.procs} processes", workers)]
    for name, rate in rows:
        print(f"{name:<44}{rate:>8.0f}/s  {rate / raw:>5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
