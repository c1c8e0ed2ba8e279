"""Ingest throughput: HTTP NDJSON batches through the control plane vs raw `insert_many`.

Both sides write the same events into the same mongod in the same run, so the ratio says
how much of the database's ceiling the ingest path (parse, validate, dedup, project) keeps.
Targets (issue 15): batches of 500 >= 20,000 events/s and >= 0.5 of raw; batches of 50
>= 0.3 of raw. Batches of 1 are measured on a tenth of the events (one request each).

`raw` inserts into a collection with no index but `_id`; `raw+idx` into one with the event
log's indexes (`db.INDEXES["events"]`), which the ingest has to maintain: the second ratio
says how much of what the database can do for these documents the ingest keeps.

    python bench/bench_ingest.py [--events 40000] [--rounds 3] [--workers 2] [--senders 4]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from pymongo import MongoClient
from tqdm import tqdm

from aisci_nb.contract.envelope import make_event
from aisci_nb.control_plane.eventlog import event_document
from aisci_nb.db import INDEXES, new_id
from aisci_nb.ops.services import ephemeral_stack
from aisci_nb.queue.claims import new_run_document


def workload(n: int, runs: list[str], batch: int) -> list[dict]:
    """A realistic mix (progress, metrics, search nodes, logs) from one pod per run.

    Each pod's emitter sends its own run's events, so a batch holds one run's events and
    the pods' batches interleave.
    """
    rng = random.Random(0)
    per_run = n // len(runs)
    streams = []
    for run_id in runs:
        events = []
        for i in range(1, per_run + 1):
            stage = f"Stage_{1 + (i - 1) * 4 // per_run}"
            kind = rng.random()
            if kind < 0.4:
                t, d = "ai.run.stage_progress", {"stage": stage, "progress": i / per_run,
                                                "iteration": i, "good_nodes": i // 3}
            elif kind < 0.6:
                t = "ai.run.stage_metric"
                d = {"stage": stage, "name": "val_loss", "value": rng.random()}
            elif kind < 0.8:
                t, d = "ai.node.completed", {"stage": stage, "node_id": f"n{i}",
                                             "is_buggy": False, "metric": rng.random(),
                                             "exec_time_s": 1.5}
            else:
                t, d = "ai.run.log", {"level": "info", "message": f"step {i}"}
            ev = make_event(t, {"run_id": run_id, **d}, source=f"bench://{run_id}", seq=i)
            events.append(ev.to_json())
        streams.append([events[i:i + batch] for i in range(0, len(events), batch)])
    out: list[dict] = []
    for chunks in zip(*streams, strict=True):
        for chunk in chunks:
            out.extend(chunk)
    return out


def raw_ceiling(client: MongoClient, db_name: str, events: list[dict], batch: int,
                indexed: bool = False) -> float:
    from aisci_nb.contract.envelope import parse_event

    coll = client[db_name]["raw_events"]
    coll.drop()
    if indexed:
        coll.create_indexes(INDEXES["events"])
    docs = [event_document(parse_event(e)) for e in events]
    start = time.perf_counter()
    for i in range(0, len(docs), batch):
        coll.insert_many(docs[i:i + batch], ordered=False)
    return len(docs) / (time.perf_counter() - start)


def http_rate(url: str, key: str, events: list[dict], batch: int,
              senders: int = 1) -> tuple[float, int]:
    """Events/s through the ingest; `senders` clients post concurrently, as pods do."""
    lines = [json.dumps(e) for e in events]
    bodies = ["\n".join(lines[i:i + batch]).encode() for i in range(0, len(lines), batch)]
    headers = {"content-type": "application/x-ndjson", "authorization": f"Bearer {key}"}
    progress = tqdm(total=len(bodies), desc=f"batches of {batch}", leave=False,
                    disable=not sys.stderr.isatty())

    def send(share: list[bytes]) -> int:
        accepted = 0
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            for body in share:
                resp = client.post("/api/ingest/events", content=body)
                resp.raise_for_status()
                accepted += resp.json()["accepted"]
                progress.update()
        return accepted

    start = time.perf_counter()
    with ThreadPoolExecutor(senders) as pool:
        accepted = sum(pool.map(send, [bodies[i::senders] for i in range(senders)]))
    elapsed = time.perf_counter() - start
    progress.close()
    return len(events) / elapsed, accepted


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--rounds", type=int, default=3, help="the median of this many rounds")
    ap.add_argument("--workers", type=int, default=2, help="control-plane processes")
    ap.add_argument("--senders", type=int, default=4, help="concurrent HTTP clients (pods)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ephemeral_stack(
            Path(tmp), db_name="bench", workers=args.workers) as env:
        client = MongoClient(env["MONGODB_URL"], tz_aware=True)
        db = client.get_default_database()
        runs = [new_id() for _ in range(8)]
        db.runs.insert_many([{**new_run_document("h"), "_id": r} for r in runs])
        print(f"{'batch':>6} {'http ev/s':>10} {'raw ev/s':>10} {'ratio':>6} "
              f"{'raw+idx ev/s':>13} {'ratio':>6}  (median of {args.rounds} rounds, "
              f"{args.events} events each, batch 1: a tenth; {args.workers} server processes, "
              f"{args.senders} senders; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
        for batch in (1, 50, 500):
            rates, raws, indexed = [], [], []
            n = args.events // 10 if batch == 1 else args.events
            for _ in range(args.rounds):
                events = workload(n, runs, batch)  # fresh ids each round
                raws.append(raw_ceiling(client, "bench", events, batch))
                indexed.append(raw_ceiling(client, "bench", events, batch, indexed=True))
                rate, accepted = http_rate(env["CONTROL_PLANE_URL"], env["AISCI_API_KEY"],
                                           events, batch, args.senders)
                assert accepted == len(events), f"only {accepted} of {len(events)} accepted"
                rates.append(rate)
            rate, raw = statistics.median(rates), statistics.median(raws)
            idx = statistics.median(indexed)
            print(f"{batch:>6} {rate:>10.0f} {raw:>10.0f} {rate / raw:>6.2f} {idx:>13.0f} "
                  f"{rate / idx:>6.2f}")


if __name__ == "__main__":
    main()
