"""The statistics page: throughput, queue and cost over time, aggregated in MongoDB.

Each series is one aggregation over an indexed time field, bucketed with `$dateTrunc`; the
window is bounded so the page stays quick however long the system has run.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pymongo.database import Database

from ...db import utcnow
from .overview import status_counts

EVENTS_WINDOW = timedelta(hours=6)
DAYS_WINDOW = timedelta(days=30)


def events_per_second(db: Database, window: timedelta = EVENTS_WINDOW) -> list[dict[str, Any]]:
    """Events received per second, averaged per minute, over the window."""
    rows = db.events.aggregate([
        {"$match": {"receivedAt": {"$gte": utcnow() - window}}},
        {"$group": {"_id": {"$dateTrunc": {"date": "$receivedAt", "unit": "minute"}},
                    "n": {"$sum": 1}}},
        {"$sort": {"_id": 1}}])
    return [{"t": r["_id"], "v": round(r["n"] / 60, 3)} for r in rows]


def runs_per_status_per_day(db: Database, window: timedelta = DAYS_WINDOW
                            ) -> list[dict[str, Any]]:
    rows = db.runs.aggregate([
        {"$match": {"createdAt": {"$gte": utcnow() - window}}},
        {"$group": {"_id": {"day": {"$dateTrunc": {"date": "$createdAt", "unit": "day"}},
                            "status": "$status"}, "n": {"$sum": 1}}},
        {"$sort": {"_id.day": 1}}])
    days: dict[Any, dict[str, Any]] = {}
    for r in rows:
        days.setdefault(r["_id"]["day"], {"t": r["_id"]["day"]})[str(r["_id"]["status"])] = r["n"]
    return list(days.values())


def pickup(db: Database, window: timedelta = DAYS_WINDOW) -> list[dict[str, Any]]:
    """Per hour: runs created, and the mean seconds from queued to claimed (pickup latency)."""
    rows = db.runs.aggregate([
        {"$match": {"createdAt": {"$gte": utcnow() - window}}},
        {"$group": {"_id": {"$dateTrunc": {"date": "$createdAt", "unit": "hour"}},
                    "created": {"$sum": 1},
                    "latency": {"$avg": {"$cond": [
                        {"$and": [{"$ne": ["$claimedAt", None]},
                                  {"$ne": [{"$type": "$claimedAt"}, "missing"]}]},
                        {"$divide": [{"$subtract": ["$claimedAt", "$createdAt"]}, 1000]},
                        None]}}}},
        {"$sort": {"_id": 1}}])
    return [{"t": r["_id"], "created": r["created"],
             "latency_s": round(r["latency"], 3) if r["latency"] is not None else None}
            for r in rows]


def llm_per_day(db: Database, window: timedelta = DAYS_WINDOW) -> dict[str, Any]:
    """Tokens and cost per day, and per model over the window, from the stored LLM calls."""
    since = utcnow() - window
    per_day = db.llm_calls.aggregate([
        {"$match": {"timestamp": {"$gte": since}}},
        {"$group": {"_id": {"$dateTrunc": {"date": "$timestamp", "unit": "day"}},
                    "tokens": {"$sum": {"$add": [{"$ifNull": ["$prompt_tokens", 0]},
                                                 {"$ifNull": ["$completion_tokens", 0]}]}},
                    "cost": {"$sum": {"$ifNull": ["$cost_usd", 0]}}}},
        {"$sort": {"_id": 1}}])
    per_model = db.llm_calls.aggregate([
        {"$group": {"_id": "$model", "calls": {"$sum": 1},
                    "tokens": {"$sum": {"$add": [{"$ifNull": ["$prompt_tokens", 0]},
                                                 {"$ifNull": ["$completion_tokens", 0]}]}},
                    "cost": {"$sum": {"$ifNull": ["$cost_usd", 0]}}}},
        {"$sort": {"cost": -1}}, {"$limit": 50}])
    return {"per_day": [{"t": r["_id"], "tokens": r["tokens"], "cost": round(r["cost"], 6)}
                        for r in per_day],
            "per_model": [{"model": r["_id"], "calls": r["calls"], "tokens": r["tokens"],
                           "cost": round(r["cost"], 6)} for r in per_model]}


def gpu_hours(db: Database) -> dict[str, Any]:
    rows = list(db.runs.aggregate([
        {"$match": {"gpuUsage.seconds": {"$gt": 0}}},
        {"$group": {"_id": {"$ifNull": ["$gpuUsage.name", "CPU"]},
                    "s": {"$sum": "$gpuUsage.seconds"}}}]))
    return {"total": round(sum(r["s"] for r in rows) / 3600, 3),
            "by_gpu": [{"gpu": r["_id"], "hours": round(r["s"] / 3600, 3)} for r in rows]}


def stats(db: Database, ingest: dict[str, float] | None = None) -> dict[str, Any]:
    """Everything the statistics page charts; `ingest` is this process's ingest counters."""
    counts = status_counts(db)
    ingest = ingest or {}
    seen = ingest.get("accepted", 0) + ingest.get("invalid", 0)
    return {
        "counts": counts, "queue_depth": counts.get("QUEUED", 0),
        "events_per_second": events_per_second(db), "pickup": pickup(db),
        "runs_per_day": runs_per_status_per_day(db), "llm": llm_per_day(db),
        "gpu_hours": gpu_hours(db),
        "ingest": {**ingest, "error_rate": round(ingest.get("invalid", 0) / seen, 4)
                   if seen else 0.0},
    }
