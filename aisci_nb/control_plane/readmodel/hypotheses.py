"""Hypotheses: the list with their ideation state, one hypothesis with its ideas and runs."""

from __future__ import annotations

from typing import Any

from pymongo.database import Database

from .runs import ROW_FIELDS

IDEA_FIELDS = ("Name", "Title", "Short Hypothesis", "Related Work", "Abstract", "Experiments",
               "Risk Factors and Limitations")
PAGE_SIZE = 50


def list_hypotheses(db: Database, page: int = 1, size: int = PAGE_SIZE) -> dict[str, Any]:
    page = max(1, page)
    rows = list(db.hypotheses.find({}, {"title": 1, "createdAt": 1, "createdBy": 1,
                                        "ideation.status": 1, "ideation.count": 1})
                .sort("createdAt", -1).skip((page - 1) * size).limit(size))
    counts = {r["_id"]: r["n"] for r in db.runs.aggregate([
        {"$match": {"hypothesisId": {"$in": [h["_id"] for h in rows]}}},
        {"$group": {"_id": "$hypothesisId", "n": {"$sum": 1}}}])}
    for h in rows:
        h["runs"] = counts.get(h["_id"], 0)
    total = db.hypotheses.estimated_document_count()
    return {"hypotheses": rows, "total": total, "page": page,
            "pages": max(1, -(-total // size))}


def ideas_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The generated ideas (ideation), else the hypothesis's own idea as the only one."""
    ideas = (doc.get("ideation") or {}).get("ideas") or []
    if not ideas and isinstance(doc.get("ideaJson"), dict):
        ideas = [doc["ideaJson"]]
    return [i for i in ideas if isinstance(i, dict)]


def hypothesis_detail(db: Database, hypothesis_id: str) -> dict[str, Any] | None:
    doc = db.hypotheses.find_one({"_id": hypothesis_id})
    if doc is None:
        return None
    runs = list(db.runs.find({"hypothesisId": hypothesis_id}, {**ROW_FIELDS, "ideaIndex": 1})
                .sort("createdAt", -1).limit(200))
    return {"hypothesis": doc, "ideation": doc.get("ideation") or {}, "ideas": ideas_of(doc),
            "idea_fields": IDEA_FIELDS, "runs": runs}
