"""A person's verdict on a run that awaits one (API and CLI share this): a conditional
status change (AWAITING_HUMAN → HUMAN_VALIDATED, or FAILED with the reviewer's reason) and a
`validations` document that keeps who, when and what. Stored in the run's event log as an
already-projected `ai.run.status_changed`, so the timeline shows it; never through ingest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pymongo.database import Database

from ..contract.envelope import make_event
from ..contract.lifecycle import HUMAN_VERDICT, RunStatus, human_verdict_filter
from ..control_plane.eventlog import insert_events
from ..db import new_id, utcnow
from ..errors import RunStateRefused
from .claims import _next_seq

Verdict = Literal["pass", "fail"]
HUMAN_REJECTED = "HUMAN_REJECTED"


class ValidationRefused(RunStateRefused):
    """The run is unknown or does not await a person; `status` says where it is."""


@dataclass(frozen=True)
class HumanValidation:
    id: str
    run_id: str
    verdict: str
    status: str
    by: str


def record_human_verdict(
    db: Database, run_id: str, verdict: Verdict, *, by: str, notes: str | None = None,
    source: str = "aisci://human",
) -> HumanValidation:
    if verdict not in HUMAN_VERDICT:
        raise ValueError(f"verdict must be pass or fail, not {verdict!r}")
    target = HUMAN_VERDICT[verdict]
    now = utcnow()
    sets: dict = {"status": target.value, "updatedAt": now, "humanValidation": {
        "verdict": verdict, "by": by, "at": now, "notes": notes}}
    if target is RunStatus.FAILED:
        sets.update(failedAt=now, errorType=HUMAN_REJECTED, retryable=False,
                    errorMessage=f"rejected by {by}: {notes or 'no reason given'}")
    else:
        sets["validatedAt"] = now
    flt = human_verdict_filter(run_id, verdict)
    doc = db.runs.find_one(flt, {"seqCeiling": 1, "lastEventSeq": 1, "leaseEpoch": 1})
    seq = _next_seq(doc) if doc else 0
    if doc is None or db.runs.update_one(flt, {"$set": sets, "$max": {
            "lastEventSeq": seq, "seqCeiling": seq}}).modified_count != 1:
        current = db.runs.find_one({"_id": run_id}, {"status": 1})
        if current is None:
            raise ValidationRefused(f"no run {run_id}", None)
        raise ValidationRefused(f"run {run_id} is {current['status']}, not AWAITING_HUMAN: "
                                "only a run awaiting a person takes a verdict",
                                current["status"])
    validation_id = new_id()
    db.validations.insert_one({
        "_id": validation_id, "runId": run_id, "kind": "human", "verdict": verdict,
        "notes": notes, "rubric": None, "createdBy": by, "createdAt": now, "updatedAt": now})
    event = make_event("ai.run.status_changed", {
        "run_id": run_id, "from": RunStatus.AWAITING_HUMAN.value, "to": target.value,
        "reason": f"human verdict {verdict} by {by}" + (f": {notes}" if notes else "")},
        source=source, seq=seq, epoch=doc.get("leaseEpoch"))
    insert_events(db, [event], durable=True)  # the run already says what it would project
    return HumanValidation(validation_id, run_id, verdict, target.value, by)
