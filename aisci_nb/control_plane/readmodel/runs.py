"""The runs list: filters, title search and pagination, each page read off an index.

Every filter has a `(field, createdAt)` index (see `aisci_nb.db.INDEXES`), so a page costs
the rows it shows plus the count, whatever the number of runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo.database import Database

from ...contract.lifecycle import RunStatus

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
TITLE_MATCHES_MAX = 1000
COUNT_LIMIT = 100_000
# What a list row needs; a run's steps, metrics and history stay on its own page.
ROW_FIELDS = {"status": 1, "hypothesisId": 1, "priority": 1, "createdAt": 1, "updatedAt": 1,
              "currentStage": 1, "pod": 1, "claimedBy": 1, "hidden": 1, "region": 1,
              "llmUsage.costUsd": 1, "errorType": 1}


@dataclass
class RunFilter:
    """What the runs page asks for; empty fields filter nothing."""

    status: str | None = None
    hypothesis: str | None = None
    pod: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None  # a piece of the hypothesis's title
    hidden: bool = False  # True: only hidden runs; False: only visible ones
    page: int = 1
    size: int = PAGE_SIZE
    errors: list[str] = field(default_factory=list)

    def query(self, db: Database) -> dict[str, Any]:
        flt: dict[str, Any] = {"hidden": True} if self.hidden else {"hidden": {"$ne": True}}
        if self.status:
            if self.status not in RunStatus.__members__:
                self.errors.append(f"unknown status {self.status!r}")
            flt["status"] = self.status
        if self.hypothesis:
            flt["hypothesisId"] = self.hypothesis
        if self.pod:
            flt["pod.id"] = self.pod
        if self.since or self.until:
            created: dict[str, Any] = {}
            if self.since:
                created["$gte"] = self.since
            if self.until:
                created["$lt"] = self.until + timedelta(days=1) if self.until.hour == 0 \
                    and self.until.minute == 0 else self.until
            flt["createdAt"] = created
        if self.q:
            ids = [h["_id"] for h in db.hypotheses.find(
                {"title": {"$regex": re.escape(self.q), "$options": "i"}}, {"_id": 1}
            ).limit(TITLE_MATCHES_MAX)]
            if self.hypothesis:
                ids = [i for i in ids if i == self.hypothesis]
            flt["hypothesisId"] = {"$in": ids}
        return flt


def titles_for(db: Database, runs: list[dict[str, Any]]) -> dict[str, str]:
    ids = list({r.get("hypothesisId") for r in runs if r.get("hypothesisId")})
    return {h["_id"]: h.get("title") or "" for h in db.hypotheses.find(
        {"_id": {"$in": ids}}, {"title": 1})}


def list_runs(db: Database, f: RunFilter) -> dict[str, Any]:
    """One page of runs, newest first, with the total and each run's hypothesis title."""
    flt = f.query(db)
    size = max(1, min(f.size, MAX_PAGE_SIZE))
    page = max(1, f.page)
    rows = list(db.runs.find(flt, ROW_FIELDS).sort("createdAt", -1)
                .skip((page - 1) * size).limit(size))
    total = db.runs.count_documents(flt, limit=COUNT_LIMIT)
    titles = titles_for(db, rows)
    for r in rows:
        r["title"] = titles.get(r.get("hypothesisId"), "")
    return {"runs": rows, "total": total, "page": page, "size": size,
            "pages": max(1, -(-total // size)), "errors": f.errors}


def set_hidden(db: Database, run_id: str, hidden: bool) -> bool:
    """Hide a run from the lists (or show it again); its data stays. False: no such run."""
    return db.runs.update_one({"_id": run_id}, {"$set": {"hidden": hidden}}).matched_count == 1
