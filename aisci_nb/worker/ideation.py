"""The queue side of an ideation request: its status on the request and its hypothesis.

The research itself runs in `notebooks/ideation.ipynb` (see `aisci_nb.research.ideation`),
which the worker executes like a stage and which leaves `ideas.json` in its working
directory. Here: RUNNING when claimed; COMPLETED with the ideas (the first becomes the
hypothesis's `ideaJson`) and, when the request asked for it (`autoRun`), that idea's run
queued in the same transaction; or FAILED with the reason. Every write is fenced by the
lease, so a worker whose request was taken over changes nothing.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from pymongo.database import Database

from ..contract.idea import InvalidIdea, validate_idea
from ..contract.lifecycle import IdeationStatus
from ..db import utcnow
from ..errors import IdeationError
from ..queue import claims
from ..queue.submit import log_enqueued
from ..research.ideation import IDEAS_FILE


def start(db: Database, claim: claims.Claim) -> dict[str, Any] | None:
    """Mark the hypothesis's ideation as running; the hypothesis (None if missing)."""
    request = claim.run
    now = utcnow()
    db.hypotheses.update_one({"_id": request.get("hypothesisId")}, {"$set": {
        "ideation.requestId": request["_id"], "ideation.status": "RUNNING",
        "ideation.startedAt": now, "updatedAt": now}})
    return db.hypotheses.find_one({"_id": request.get("hypothesisId")})


def read_result(cwd: Path) -> dict[str, Any]:
    """What the notebook left in `ideas.json`, its ideas checked; IdeationError if unusable."""
    path = cwd / IDEAS_FILE
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IdeationError(f"the ideation notebook left no readable {IDEAS_FILE}: {exc}"
                            ) from None
    ideas = result.get("ideas") if isinstance(result, dict) else None
    if not ideas or not isinstance(ideas, list):
        raise IdeationError(f"{IDEAS_FILE} holds no ideas")
    try:
        for i, idea in enumerate(ideas):
            validate_idea(idea, where=f"idea #{i + 1}")
    except InvalidIdea as exc:
        raise IdeationError(str(exc)) from None
    return result


def hypothesis_text(doc: dict[str, Any]) -> dict[str, Any]:
    """The part of the hypothesis the notebook starts from (a parameter: plain data)."""
    return {"title": doc.get("title"), "idea": doc.get("idea"), "topic": doc.get("topic")}


def complete(db: Database, claim: claims.Claim, result: dict[str, Any]) -> str | None:
    """COMPLETED with the ideas, and the first idea's run queued when `autoRun` asks:
    one transaction, fenced by the lease. The queued run's id ("" when none), or None when
    the lease was lost."""
    request = claim.run
    ideas = result["ideas"]
    now = utcnow()
    run = None
    if request.get("autoRun"):
        run = claims.new_run_document(request["hypothesisId"], priority=request.get("priority")
                                     or 0, region=request.get("region"))
        run["lastEventSeq"] = 1
    usage = result.get("usage")
    summary: dict[str, Any] = {
        "ideation.status": IdeationStatus.COMPLETED.value, "ideation.ideas": ideas,
        "ideation.reflections": request.get("reflections"),
        "ideation.rounds": result.get("rounds"), "ideation.usage": usage,
        "ideation.completedAt": now, "ideaJson": ideas[0],
        "idea": ideas[0].get("Short Hypothesis") or ideas[0].get("Title"), "updatedAt": now}
    if run is not None:
        summary["ideation.runId"] = run["_id"]
    fields = {"status": IdeationStatus.COMPLETED.value, "ideas": ideas, "completedAt": now,
              "rounds": result.get("rounds"), "usage": usage, "updatedAt": now,
              "leaseExpiresAt": None, "runId": run["_id"] if run else None}
    flt = claim.kind.filter(claim.run_id, IdeationStatus.COMPLETED, leaseEpoch=claim.epoch)

    def write(s) -> bool:
        if db.ideation_requests.update_one(flt, {"$set": fields}, session=s).modified_count != 1:
            return False
        db.hypotheses.update_one({"_id": request["hypothesisId"]}, {"$set": summary},
                                 session=s)
        if run is not None:
            db.runs.insert_one(run, session=s)
        return True

    with db.client.start_session() as session:
        if not session.with_transaction(write):
            return None
    if run is None:
        return ""
    log_enqueued(db, run, f"ideation://{socket.gethostname()}")
    return run["_id"]


def mirror_failure(db: Database, claim: claims.Claim, status: str, error: str) -> None:
    """Tell the hypothesis what became of its request: re-queued for another attempt, or
    failed for good with the reason."""
    now = utcnow()
    sets: dict[str, Any] = {"ideation.status": status, "updatedAt": now}
    if status == "FAILED":
        sets.update({"ideation.failedAt": now, "ideation.error": error})
    else:
        sets["ideation.lastError"] = error
    db.hypotheses.update_one({"_id": claim.run.get("hypothesisId")}, {"$set": sets})
