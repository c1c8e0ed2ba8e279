"""Pickup latency: how long a queued run waits for an idle worker, change stream vs polling.

One idle worker process (the real `Worker`, no step notebooks) per mode; the benchmark
queues runs one at a time at random moments and measures `claimedAt - createdAt` (same
host clock). Polling is the baseline: the existing pod worker polls every ~10 s, which is
also our fallback default where MongoDB is not a replica set.

    python bench/bench_pickup.py [--samples 100] [--poll-samples 12] [--poll-interval 10]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pymongo import MongoClient
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import private_mongod, quiet_worker

from aisci_nb.queue.claims import new_run_document


def serve() -> None:
    """The worker process: claim and process runs until terminated."""
    import signal

    from aisci_nb.db import connect
    from aisci_nb.settings import load_settings
    from aisci_nb.storage.store import open_store

    settings = load_settings()
    worker = quiet_worker(settings, connect(settings), open_store(settings), steps=())
    signal.signal(signal.SIGTERM, lambda *_: worker.request_stop())
    worker.run_forever()


def measure(url: str, root: Path, *, streams: bool, samples: int, poll_interval_s: float
            ) -> list[float]:
    env = {**os.environ, "MONGODB_URL": url, "WORK_DIR": str(root / "work"),
           "ARTIFACTS_DIR": str(root / "artifacts"), "CHANGE_STREAMS": str(streams).lower(),
           "POLL_INTERVAL_S": str(poll_interval_s), "MINIO_ENDPOINT": ""}
    worker = subprocess.Popen([sys.executable, __file__, "--serve"], env=env, cwd=root,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = MongoClient(url, tz_aware=True).get_default_database()
    db.runs.delete_many({})
    latencies: list[float] = []
    rng = random.Random(1)
    try:
        # A first run tells that the worker is up; it is not counted.
        warm = new_run_document("warm-up")
        db.runs.insert_one(warm)
        while db.runs.find_one({"_id": warm["_id"], "claimedAt": {"$ne": None}}) is None:
            time.sleep(0.05)
        label = "change stream" if streams else f"polling every {poll_interval_s:g}s"
        for _ in tqdm(range(samples), desc=label):
            # A random moment in the worker's cycle (a poller's cycle is its interval).
            time.sleep(rng.uniform(0.05, 0.3) if streams else rng.uniform(0, poll_interval_s))
            run = new_run_document("bench")
            db.runs.insert_one(run)
            while (doc := db.runs.find_one({"_id": run["_id"], "claimedAt": {"$ne": None}},
                                           {"claimedAt": 1, "createdAt": 1})) is None:
                time.sleep(0.001)
            latencies.append((doc["claimedAt"] - run["createdAt"]).total_seconds())
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    return latencies


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(
        values) > 1 else values[0]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=100, help="runs timed with the change stream")
    p.add_argument("--poll-samples", type=int, default=12, help="runs timed while polling")
    p.add_argument("--poll-interval", type=float, default=10.0, help="the baseline's interval")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve()
        return 0
    with private_mongod("bench_pickup") as (url, root):
        stream = measure(url, root, streams=True, samples=args.samples,
                         poll_interval_s=args.poll_interval)
        poll = measure(url, root, streams=False, samples=args.poll_samples,
                       poll_interval_s=args.poll_interval)
    print("\npickup latency (queued -> claimed), milliseconds")
    print(f"{'mode':<28}{'runs':>6}{'p50':>11}{'p95':>11}")
    rows = [("change stream", stream), (f"polling every {args.poll_interval:g}s", poll)]
    for name, values in rows:
        print(f"{name:<28}{len(values):>6}{pct(values, 50) * 1e3:>11.1f}"
              f"{pct(values, 95) * 1e3:>11.1f}")
    print(f"ratio polling / change stream: p50 {pct(poll, 50) / pct(stream, 50):.0f}x, "
          f"p95 {pct(poll, 95) / pct(stream, 95):.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
