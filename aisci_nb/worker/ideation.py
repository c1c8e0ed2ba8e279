"""Serving an ideation request that a worker claimed from `ideation_requests`.

The queue mechanics (claim, lease, heartbeat, fencing, reaping) are the runs' own. The
research itself, an LLM proposing and reflecting on ideas in `notebooks/ideation.ipynb`, is
a later step of the project; until then the request is answered with the hypothesis's own
idea, validated, so the hypothesis and the request carry a result the UI can show.
"""

from __future__ import annotations

from typing import Any

from pymongo.database import Database

from ..contract.idea import Idea
from ..contract.lifecycle import IdeationStatus
from ..db import utcnow
from ..errors import IdeationError
from ..queue import claims


def generate_ideas(hypothesis: dict[str, Any] | None, request: dict[str, Any]) -> list[dict]:
    if hypothesis is None:
        raise IdeationError(f"hypothesis {request.get('hypothesisId')!r} not found")
    idea = hypothesis.get("ideaJson")
    if not isinstance(idea, dict):
        raise IdeationError(f"hypothesis {hypothesis['_id']}: ideaJson is missing")
    Idea.model_validate(idea)
    return [idea][: max(1, int(request.get("maxNumGenerations") or 1))]


def start(db: Database, claim: claims.Claim) -> dict[str, Any] | None:
    """Mark the hypothesis's ideation as running; the hypothesis (None if missing)."""
    request = claim.run
    now = utcnow()
    db.hypotheses.update_one({"_id": request.get("hypothesisId")}, {"$set": {
        "ideation.requestId": request["_id"],
        "ideation.status": IdeationStatus.RUNNING.value,
        "ideation.startedAt": now, "updatedAt": now}})
    return db.hypotheses.find_one({"_id": request.get("hypothesisId")})


def finish(db: Database, claim: claims.Claim, ideas: list[dict], error: str | None) -> bool:
    """Record the result on the request (fenced by the lease) and on its hypothesis."""
    request = claim.run
    now = utcnow()
    if error is None:
        target, fields = IdeationStatus.COMPLETED, {"ideas": ideas, "completedAt": now}
        summary = {"ideation.status": IdeationStatus.COMPLETED.value, "ideation.ideas": ideas,
                   "ideation.reflections": request.get("reflections"),
                   "ideation.completedAt": now}
    else:
        target, fields = IdeationStatus.FAILED, {"failedAt": now, "error": error}
        summary = {"ideation.status": IdeationStatus.FAILED.value, "ideation.failedAt": now,
                   "ideation.error": error}
    if not claims.set_status(db, claim, target, fields):
        return False
    db.hypotheses.update_one({"_id": request.get("hypothesisId")},
                             {"$set": {**summary, "updatedAt": now}})
    return True
