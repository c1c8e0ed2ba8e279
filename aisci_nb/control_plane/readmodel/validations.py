"""The human-validation queue: runs AWAITING_HUMAN, oldest first, with their review."""

from __future__ import annotations

from typing import Any

from pymongo.database import Database

from .runs import titles_for

QUEUE_MAX = 200


def validation_queue(db: Database) -> list[dict[str, Any]]:
    runs = list(db.runs.find({"status": "AWAITING_HUMAN"},
                             {"hypothesisId": 1, "createdAt": 1, "updatedAt": 1, "pod": 1})
                .sort("updatedAt", 1).limit(QUEUE_MAX))
    ids = [r["_id"] for r in runs]
    titles = titles_for(db, runs)
    reviews: dict[str, dict[str, Any]] = {}
    for v in db.validations.find({"runId": {"$in": ids}, "kind": "auto"}).sort("createdAt", 1):
        reviews[v["runId"]] = v
    papers = {a["runId"]: a["key"] for a in db.artifacts.find(
        {"runId": {"$in": ids}, "$or": [{"contentType": "application/pdf"},
                                        {"key": {"$regex": r"\.pdf$"}}]}, {"runId": 1, "key": 1})}
    for r in runs:
        r["title"] = titles.get(r.get("hypothesisId"), "")
        r["review"] = reviews.get(r["_id"])
        r["pdf"] = papers.get(r["_id"])
    return runs
