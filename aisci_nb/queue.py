"""The run queue in MongoDB: enqueue, claim, and fenced status writes.

Only this module writes the queue fields (`claimedBy`, `claimedAt`, `leaseExpiresAt`,
`leaseEpoch`, `attempt`). A claim is one atomic `find_one_and_update`, so two workers can
never hold the same run; every later worker write is conditioned on the lease epoch it got,
so a worker whose lease was taken over writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database

from .db import new_id, utcnow
from .lifecycle import RunStatus, transition_filter

DEFAULT_LEASE_S = 60.0


@dataclass(frozen=True)
class Claim:
    """A run held by this worker under lease epoch `epoch`."""

    run: dict[str, Any]
    epoch: int

    @property
    def run_id(self) -> str:
        return self.run["_id"]


def new_run_document(hypothesis_id: str, *, priority: int = 0, region: str | None = None) -> dict:
    now = utcnow()
    return {
        "_id": new_id(),
        "hypothesisId": hypothesis_id,
        "status": RunStatus.QUEUED.value,
        "priority": priority,
        "region": region,
        "claimedBy": None,
        "claimedAt": None,
        "leaseEpoch": 0,
        "attempt": 0,
        "retryCount": 0,
        "currentStage": None,
        "stageTiming": {},
        "steps": {},
        "metrics": {},
        "lastEventSeq": 0,
        "createdAt": now,
        "updatedAt": now,
    }


def claim_next(
    db: Database, pod_id: str, *, lease_s: float = DEFAULT_LEASE_S
) -> Claim | None:
    """Atomically take the best queued run (priority, then age) or return None."""
    now = utcnow()
    run = db.runs.find_one_and_update(
        {"status": RunStatus.QUEUED.value},
        {
            "$set": {
                "status": RunStatus.SCHEDULED.value,
                "claimedBy": pod_id,
                "claimedAt": now,
                "leaseExpiresAt": now + timedelta(seconds=lease_s),
                "updatedAt": now,
            },
            "$inc": {"leaseEpoch": 1, "attempt": 1},
        },
        sort=[("priority", -1), ("createdAt", 1)],
        return_document=ReturnDocument.AFTER,
    )
    return Claim(run=run, epoch=run["leaseEpoch"]) if run else None


def fenced_filter(claim: Claim, **extra: Any) -> dict[str, Any]:
    return {"_id": claim.run_id, "leaseEpoch": claim.epoch, **extra}


def set_status(
    db: Database, claim: Claim, target: RunStatus, fields: dict[str, Any] | None = None
) -> bool:
    """Move the claimed run to `target` if the lifecycle allows and the lease is still ours."""
    now = utcnow()
    update = {"$set": {"status": target.value, "updatedAt": now, **(fields or {})}}
    flt = transition_filter(claim.run_id, target, leaseEpoch=claim.epoch)
    return db.runs.update_one(flt, update).modified_count == 1


def record_step(db: Database, claim: Claim, step: str, record: dict[str, Any]) -> bool:
    """Write the step record (status, times, output keys) while the lease is ours."""
    sets = {f"steps.{step}.{k}": v for k, v in record.items()}
    sets["updatedAt"] = utcnow()
    return db.runs.update_one(fenced_filter(claim), {"$set": sets}).modified_count == 1
