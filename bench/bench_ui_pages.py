"""Web UI server time with 10,000 runs: `/runs` (plain, filtered, searched, deep page) and
`/runs/{id}` (a busy run), each against a raw `find` of the same page in the same mongod.

The page's time is the whole request in-process (auth, read model, template); the baseline
is the bare query a page cannot do without (the page's rows, or the run with its newest
events). Target: every page < 200 ms.

    python bench/bench_ui_pages.py [--runs 10000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from pymongo import MongoClient
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import private_mongod

from aisci_nb.contract.lifecycle import RunStatus
from aisci_nb.control_plane.app import create_app
from aisci_nb.db import new_id, utcnow
from aisci_nb.queue.claims import new_run_document
from aisci_nb.settings import Settings

TOKEN = "bench-ui-token"
STATUSES = [s.value for s in RunStatus]


def populate(db, n_runs: int, n_events: int) -> str:
    """n_runs runs over n_runs/10 hypotheses, ten pods; one busy run with n_events events."""
    rng = random.Random(0)
    now = utcnow()
    hyps = [{"_id": new_id(), "title": f"hypothesis {i} about topic {i % 37}",
             "createdAt": now - timedelta(minutes=i)} for i in range(max(1, n_runs // 10))]
    db.hypotheses.insert_many(hyps)
    runs = []
    for i in tqdm(range(n_runs), desc="runs", leave=False):
        r = new_run_document(hyps[i % len(hyps)]["_id"], priority=rng.randint(0, 5))
        r.update(status=rng.choice(STATUSES), createdAt=now - timedelta(seconds=i * 37),
                 pod={"id": f"pod-{i % 10}", "gpu": "H100", "region": "eu"},
                 currentStage={"name": "Stage_2", "progress": rng.random()},
                 llmUsage={"costUsd": rng.random(), "calls": 3}, lastHeartbeat=now,
                 hidden=(i % 97 == 0))
        runs.append(r)
    for start in range(0, len(runs), 2000):
        db.runs.insert_many(runs[start:start + 2000])
    busy = runs[5]["_id"]
    events = []
    for seq in range(2, n_events + 2):
        kind = seq % 4
        if kind == 0:
            t, d = "ai.run.log", {"level": "info", "message": f"line {seq}"}
        elif kind == 1:
            t, d = "ai.run.stage_metric", {"stage": "Stage_1", "name": "val_acc",
                                           "value": rng.random()}
        elif kind == 2:
            t, d = "ai.node.completed", {"stage": "Stage_1", "node_id": f"n{seq % 300}",
                                         "parent_id": f"n{(seq % 300) // 3}",
                                         "is_buggy": rng.random() < .3, "metric": rng.random()}
        else:
            t, d = "ai.run.stage_progress", {"stage": "Stage_1", "progress": seq / n_events}
        doc = {"_id": new_id(), "runId": busy, "type": t, "seq": seq, "timestamp": now,
               "receivedAt": now, "source": "bench", "data": {"run_id": busy, **d}}
        if t == "ai.run.log":
            doc["level"], doc["message"] = "info", d["message"]
        events.append(doc)
    db.events.insert_many(events)
    db.stages.insert_many([{"_id": new_id(), "runId": busy, "name": f"Stage_{i}",
                            "status": "COMPLETED", "progress": 1.0} for i in range(1, 5)])
    db.artifacts.insert_many([{"runId": busy, "key": f"runs/{busy}/f{i}.png", "size": 100,
                               "contentType": "image/png", "kind": "figure"}
                              for i in range(30)])
    return busy


def timed(fn, repeat: int) -> float:
    """Median milliseconds of `repeat` calls, after two warm-ups."""
    fn()
    fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    with private_mongod("aisci_bench_ui") as (url, _), tempfile.TemporaryDirectory() as tmp:
        db = MongoClient(url, tz_aware=True).get_default_database()
        busy = populate(db, args.runs, args.events)
        settings = Settings(_env_file=None, mongodb_url=url, aisci_ui_token=TOKEN,
                            artifacts_dir=Path(tmp))
        c = TestClient(create_app(settings))
        auth = {"authorization": f"Bearer {TOKEN}", "accept": "text/html"}
        visible = {"hidden": {"$ne": True}}
        hyp = db.runs.find_one({"_id": busy})["hypothesisId"]
        cases = [
            ("/runs", lambda: c.get("/runs", headers=auth),
             lambda: list(db.runs.find(visible).sort("createdAt", -1).limit(50))),
            ("/runs?status=FAILED", lambda: c.get("/runs?status=FAILED", headers=auth),
             lambda: list(db.runs.find({**visible, "status": "FAILED"})
                          .sort("createdAt", -1).limit(50))),
            ("/runs?pod=pod-3&page=10", lambda: c.get("/runs?pod=pod-3&page=10", headers=auth),
             lambda: list(db.runs.find({**visible, "pod.id": "pod-3"})
                          .sort("createdAt", -1).skip(450).limit(50))),
            ("/runs?q=topic 5", lambda: c.get("/runs?q=topic%205", headers=auth),
             lambda: list(db.runs.find({**visible, "hypothesisId": hyp})
                          .sort("createdAt", -1).limit(50))),
            ("/runs/{busy}", lambda: c.get(f"/runs/{busy}", headers=auth),
             lambda: (db.runs.find_one({"_id": busy}),
                      list(db.events.find({"runId": busy}).sort("seq", -1).limit(200)))),
            ("/api/runs/{busy}", lambda: c.get(f"/api/runs/{busy}", headers=auth),
             lambda: (db.runs.find_one({"_id": busy}),
                      list(db.events.find({"runId": busy}).sort("seq", -1).limit(200)))),
        ]
        assert c.get("/runs", headers=auth).status_code == 200
        print(f"{args.runs} runs, busy run with {args.events} events; median of "
              f"{args.repeat} (ms)")
        print(f"{'page':28} {'page ms':>9} {'raw find ms':>12} {'ratio':>7}  < 200 ms")
        for name, page, raw in cases:
            p, r = timed(page, args.repeat), timed(raw, args.repeat)
            print(f"{name:28} {p:9.1f} {r:12.2f} {p / r:7.1f}  {'yes' if p < 200 else 'NO'}")


if __name__ == "__main__":
    main()
