"""Read-side queries derived from the event log: nothing here is stored twice.

A metric's series and the state of each search node are folds over a run's events in
sequence order, so they are exact whatever order the events arrived in.
"""

from __future__ import annotations

from typing import Any

from pymongo.database import Database


def metric_series(db: Database, run_id: str,
                  limit: int | None = None) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """{stage: {metric name: [{seq, value, time}, ...]}} in sequence order (the newest
    `limit` points when given)."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    # A metric sent as null ("no metric yet") or as text without a number has no point.
    cursor = db.events.find({"runId": run_id, "type": "ai.run.stage_metric",
                             "data.value": {"$type": "number"}},
                            {"data": 1, "seq": 1, "timestamp": 1})
    if limit is not None:
        found = list(cursor.sort("seq", -1).limit(limit))[::-1]
    else:
        found = list(cursor.sort("seq", 1))
    for e in found:
        d = e.get("data") or {}
        out.setdefault(str(d.get("stage")), {}).setdefault(str(d.get("name")), []).append(
            {"seq": e.get("seq"), "value": d.get("value"), "time": e.get("timestamp")})
    return out


def node_states(db: Database, run_id: str, stage: str | None = None,
                limit: int | None = None) -> list[dict[str, Any]]:
    """One row per search node: the fields of its events merged in sequence order."""
    match: dict[str, Any] = {"runId": run_id, "type": {"$regex": "^ai\\.node\\."}}
    if stage:
        match["data.stage"] = stage
    return list(db.events.aggregate([
        {"$match": match},
        {"$sort": {"seq": 1, "timestamp": 1}},
        {"$group": {"_id": {"stage": "$data.stage", "node": "$data.node_id"},
                    "state": {"$mergeObjects": "$data"},
                    "lastEvent": {"$last": "$type"},
                    "events": {"$sum": 1}}},
        {"$replaceWith": {"$mergeObjects": ["$state", {"last_event": "$lastEvent",
                                                      "events": "$events"}]}},
        {"$sort": {"stage": 1, "node_id": 1}},
        *([{"$limit": limit}] if limit is not None else []),
    ]))
