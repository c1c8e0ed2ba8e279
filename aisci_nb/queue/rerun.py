"""Re-run a late step: send a finished run back to the queue to start at a given step,
keeping the earlier steps' records and outputs (the worker skips completed steps and hands
their outputs on, as when it resumes). Generalises the old system's "retry writeup".

Like any change of hands the lease epoch is incremented, so late events of the previous
execution are logged without moving the run; attempts start again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pymongo.database import Database

from ..contract.envelope import make_event
from ..contract.lifecycle import RERUNNABLE, RunStatus, rerun_filter
from ..control_plane.eventlog import insert_events
from ..db import utcnow
from ..errors import RunStateRefused
from .claims import _next_seq

CLEARED = ("completedAt", "failedAt", "canceledAt", "validatedAt", "errorType", "errorMessage",
           "errorTraceback", "retryable", "lastError", "humanValidation", "totalDuration_s",
           "cancelRequested")


class RerunRefused(RunStateRefused):
    """The run is unknown, not finished, or an earlier step did not complete."""


@dataclass(frozen=True)
class Rerun:
    run_id: str
    previous: str
    from_step: str
    reset: list[str]


def steps_from(steps: Sequence[str], name: str) -> list[str]:
    """`name` (any case) and the steps after it; ValueError naming the valid ones."""
    match = next((n for n in steps if n.lower() == name.lower()), None)
    if match is None:
        raise ValueError(f"no step {name!r} in the pipeline (steps: {', '.join(steps)})")
    return list(steps[list(steps).index(match):])


def rerun_from(db: Database, run_id: str, step: str, *, steps: Sequence[str], by: str,
               reason: str | None = None, source: str = "aisci://rerun") -> Rerun:
    """`steps`: the pipeline's step names in order (`worker.pipelines.PIPELINE_STEP_NAMES`)."""
    reset = steps_from(steps, step)  # ValueError for an unknown step
    doc = db.runs.find_one({"_id": run_id})
    if doc is None:
        raise RerunRefused(f"no run {run_id}", None)
    if doc["status"] not in RERUNNABLE:
        allowed = ", ".join(sorted(RERUNNABLE))
        raise RerunRefused(f"run {run_id} is {doc['status']}: only a run that is {allowed} "
                           "can be re-run from a step", doc["status"])
    done = {n for n, r in (doc.get("steps") or {}).items() if r.get("status") == "COMPLETED"}
    missing = [s for s in steps if s not in reset and s not in done]
    if missing:
        raise RerunRefused(f"run {run_id} cannot start at {reset[0]}: earlier step(s) "
                           f"{', '.join(missing)} did not complete", doc["status"])
    now = utcnow()
    seq = _next_seq(doc)
    update = {
        "$set": {"status": RunStatus.QUEUED.value, "updatedAt": now, "claimedBy": None,
                 "leaseExpiresAt": None, "visibleAt": None, "attempt": 0,
                 "rerun": {"from": reset[0], "by": by, "at": now, "reason": reason,
                           "previous": doc["status"]}},
        "$unset": {**{f"steps.{n}": "" for n in reset}, **dict.fromkeys(CLEARED, "")},
        "$inc": {"leaseEpoch": 1},
        "$max": {"lastEventSeq": seq, "seqCeiling": seq},
    }
    flt = rerun_filter(run_id, leaseEpoch=doc.get("leaseEpoch", 0))
    if db.runs.update_one(flt, update).modified_count != 1:
        current = db.runs.find_one({"_id": run_id}, {"status": 1}) or {}
        raise RerunRefused(f"run {run_id} changed meanwhile (now {current.get('status')}); "
                           "try again", current.get("status"))
    db.stages.update_many({"runId": run_id, "name": {"$in": reset}},
                          {"$set": {"status": "PENDING", "progress": 0.0, "updatedAt": now},
                           "$unset": {"completedAt": "", "summary": ""}})
    event = make_event("ai.run.status_changed", {
        "run_id": run_id, "from": doc["status"], "to": RunStatus.QUEUED.value,
        "reason": f"re-run from {reset[0]} by {by}" + (f": {reason}" if reason else "")},
        source=source, seq=seq, epoch=int(doc.get("leaseEpoch") or 0) + 1)
    insert_events(db, [event], durable=True)  # the run already says what it would project
    return Rerun(run_id, doc["status"], reset[0], reset)
