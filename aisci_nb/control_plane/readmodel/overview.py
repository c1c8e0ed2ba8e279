"""The overview: runs per status, workers seen recently, the newest runs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pymongo.database import Database

from ...contract.lifecycle import RunStatus
from ...db import utcnow
from .runs import ROW_FIELDS, titles_for

WORKERS_WINDOW = timedelta(minutes=30)
ACTIVE = ("SCHEDULED", "RUNNING", "AUTO_VALIDATING")


def status_counts(db: Database) -> dict[str, int]:
    counts = {s.value: 0 for s in RunStatus}
    for row in db.runs.aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}]):
        counts[str(row["_id"])] = row["n"]
    return counts


def workers(db: Database, window: timedelta = WORKERS_WINDOW) -> list[dict[str, Any]]:
    """Pods whose heartbeat reached us recently: derived from the runs they heartbeat for
    (pod, region and GPU come from `ai.run.started`), newest heartbeat first."""
    since = utcnow() - window
    rows = db.runs.aggregate([
        {"$match": {"lastHeartbeat": {"$gte": since}}},
        {"$sort": {"lastHeartbeat": -1}},
        {"$group": {"_id": {"$ifNull": ["$pod.id", "$claimedBy"]},
                    "lastHeartbeat": {"$first": "$lastHeartbeat"},
                    "gpu": {"$first": "$pod.gpu"}, "region": {"$first": "$pod.region"},
                    "mode": {"$first": "$pod.mode"},
                    "runs": {"$push": {"id": "$_id", "status": "$status"}}}},
        {"$sort": {"lastHeartbeat": -1}},
        {"$limit": 100},
    ])
    out = []
    for w in rows:
        current = next((r["id"] for r in w.pop("runs") if r.get("status") in ACTIVE), None)
        out.append({"pod": w.pop("_id"), **w, "currentRun": current})
    return out


def latest_runs(db: Database, limit: int = 20) -> list[dict[str, Any]]:
    runs = list(db.runs.find({"hidden": {"$ne": True}}, ROW_FIELDS)
                .sort("createdAt", -1).limit(limit))
    titles = titles_for(db, runs)
    for r in runs:
        r["title"] = titles.get(r.get("hypothesisId"), "")
    return runs


def overview(db: Database) -> dict[str, Any]:
    return {"counts": status_counts(db), "workers": workers(db), "runs": latest_runs(db)}
