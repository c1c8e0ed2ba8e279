"""Ingest throughput: HTTP NDJSON batches through the control plane vs raw `insert_many`.

Both sides write the same events into the same mongod in the same run, so the ratio says
how much of the database's ceiling the ingest path (parse, validate, dedup, project) keeps.
Target: >= 20,000 events/s and >= 30 % of the raw ceiling.

    python bench/bench_ingest.py [--events 20000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from pymongo import MongoClient
from tqdm import tqdm

from aisci_nb.contract.envelope import make_event
from aisci_nb.control_plane.eventlog import event_document
from aisci_nb.db import new_id
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


def raw_ceiling(client: MongoClient, db_name: str, events: list[dict], batch: int) -> float:
    from aisci_nb.contract.envelope import parse_event

    coll = client[db_name]["raw_events"]
    coll.drop()
    docs = [event_document(parse_event(e)) for e in events]
    start = time.perf_counter()
    for i in range(0, len(docs), batch):
        coll.insert_many(docs[i:i + batch], ordered=False)
    return len(docs) / (time.perf_counter() - start)


def http_rate(url: str, key: str, events: list[dict], batch: int) -> tuple[float, int]:
    lines = [json.dumps(e) for e in events]
    bodies = ["\n".join(lines[i:i + batch]).encode() for i in range(0, len(lines), batch)]
    accepted = 0
    headers = {"content-type": "application/x-ndjson", "authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        start = time.perf_counter()
        for body in tqdm(bodies, desc=f"batches of {batch}", leave=False):
            resp = client.post("/api/ingest/events", content=body)
            resp.raise_for_status()
            accepted += resp.json()["accepted"]
        elapsed = time.perf_counter() - start
    return len(events) / elapsed, accepted


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3, help="the median of this many rounds")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ephemeral_stack(Path(tmp),
                                                                 db_name="bench") as env:
        client = MongoClient(env["MONGODB_URL"], tz_aware=True)
        db = client.get_default_database()
        runs = [new_id() for _ in range(8)]
        db.runs.insert_many([{**new_run_document("h"), "_id": r} for r in runs])
        print(f"{'batch':>6} {'http ev/s':>10} {'raw ev/s':>10} {'ratio':>6}  (median of "
              f"{args.rounds} rounds, {args.events} events each)")
        for batch in (50, 500):
            rates, raws = [], []
            for _ in range(args.rounds):
                events = workload(args.events, runs, batch)  # fresh ids each round
                raws.append(raw_ceiling(client, "bench", events, batch))
                rate, accepted = http_rate(env["CONTROL_PLANE_URL"], env["AISCI_API_KEY"],
                                           events, batch)
                assert accepted == len(events), f"only {accepted} of {len(events)} accepted"
                rates.append(rate)
            rate, raw = statistics.median(rates), statistics.median(raws)
            print(f"{batch:>6} {rate:>10.0f} {raw:>10.0f} {rate / raw:>6.2f}")


if __name__ == "__main__":
    main()
