"""The work queues in MongoDB: claim, lease, release, retry, reap, cancel.

Only this module writes the queue fields (`claimedBy`, `claimedAt`, `leaseExpiresAt`,
`leaseEpoch`, `attempt`, `visibleAt`, `cancelRequested`, the sequence block end
`seqCeiling`). A claim is one atomic `find_one_and_update`, so two workers can never hold
the same run; every later worker write is conditioned on the lease epoch it got, and every
change of hands (claim, release, re-queue, reap, cancel) increments the epoch, so a worker
whose lease was taken over writes nothing. Runs and ideation requests share the mechanics;
a `QueueKind` says which collection and statuses.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database

from ..contract.lifecycle import (
    LEASED,
    TERMINAL,
    CancelResult,
    IdeationStatus,
    RunStatus,
    can_transition,
    ideation_transition_filter,
    transition_filter,
)
from ..db import new_id, utcnow

DEFAULT_LEASE_S = 60.0
# Each claim reserves the next block of event sequence numbers (up to `seqCeiling`), so a
# worker on another pod never reuses a number that an earlier attempt sent (or still has in
# flight); events the queue itself writes take the number above the block.
SEQ_BLOCK = 1_000_000


@dataclass(frozen=True)
class QueueKind:
    name: str
    collection: str
    claimed: str  # the status a claim moves to
    leased: frozenset[str]  # statuses in which a worker holds a lease
    transition: Callable[..., dict[str, Any]]  # (doc id, target status, **extra) -> filter

    def filter(self, doc_id: str, target: str, **extra: Any) -> dict[str, Any]:
        return self.transition(doc_id, target, **extra)


RUNS = QueueKind(
    "run", "runs", RunStatus.SCHEDULED.value, frozenset(s.value for s in LEASED),
    lambda doc_id, target, **extra: transition_filter(doc_id, RunStatus(target), **extra),
)
IDEATION = QueueKind(
    "ideation", "ideation_requests", IdeationStatus.RUNNING.value,
    frozenset({IdeationStatus.RUNNING.value}),
    lambda doc_id, target, **extra: ideation_transition_filter(
        doc_id, IdeationStatus(target), **extra),
)


@dataclass(frozen=True)
class Claim:
    """A document (run or ideation request) held by this worker under lease epoch `epoch`."""

    run: dict[str, Any]
    epoch: int
    kind: QueueKind = RUNS

    @property
    def run_id(self) -> str:
        return self.run["_id"]

    @property
    def seq_floor(self) -> int:
        """Where this epoch's event sequence starts (exclusive): the start of the block the
        claim reserved, or above the last projected or queue-written event if higher."""
        block_start = int(self.run.get("seqCeiling") or SEQ_BLOCK) - SEQ_BLOCK
        return max(block_start, int(self.run.get("lastEventSeq") or 0))


@dataclass(frozen=True)
class HandBack:
    """What a release, re-queue, reap or cancel did: the new status and a sequence number
    reserved for the event that tells about it (runs only)."""

    doc_id: str
    status: str
    previous: str
    attempt: int
    epoch: int
    seq: int | None = None
    visible_at: datetime | None = None


def _queued(hypothesis_id: str, priority: int, region: str | None) -> dict[str, Any]:
    """The fields every queued document starts with."""
    now = utcnow()
    return {
        "_id": new_id(),
        "hypothesisId": hypothesis_id,
        "status": "QUEUED",
        "priority": priority,
        "region": region,
        "claimedBy": None,
        "claimedAt": None,
        "leaseEpoch": 0,
        "attempt": 0,
        "createdAt": now,
        "updatedAt": now,
    }


def new_run_document(hypothesis_id: str, *, priority: int = 0, region: str | None = None) -> dict:
    return {
        **_queued(hypothesis_id, priority, region),
        "retryCount": 0,
        "currentStage": None,
        "stageTiming": {},
        "steps": {},
        "metrics": {},
        "lastEventSeq": 0,
    }


def new_ideation_request(
    hypothesis_id: str, *, reflections: int = 3, max_num_generations: int = 1,
    priority: int = 0, region: str | None = None,
) -> dict:
    return {
        **_queued(hypothesis_id, priority, region),
        "reflections": reflections,
        "maxNumGenerations": max_num_generations,
        "ideas": [],
        "error": None,
    }


def claimable_filter(now: datetime, region: str | None = None) -> dict[str, Any]:
    """Queued, visible (its retry delay over), and of this worker's region or of none."""
    flt: dict[str, Any] = {"status": "QUEUED", "visibleAt": {"$not": {"$gt": now}}}
    if region:
        flt["region"] = {"$in": [region, None]}
    return flt


def claim_next(
    db: Database, pod_id: str, *, lease_s: float = DEFAULT_LEASE_S, region: str | None = None,
    kind: QueueKind = RUNS,
) -> Claim | None:
    """Atomically take the best claimable document (priority, then age) or return None.

    The same update sets the lease, increments the epoch and reserves this epoch's block of
    event sequence numbers (`seqCeiling` grows by a block), all atomically with the claim.
    """
    now = utcnow()
    doc = db[kind.collection].find_one_and_update(
        claimable_filter(now, region),
        {
            "$set": {
                "status": kind.claimed,
                "claimedBy": pod_id,
                "claimedAt": now,
                "leaseExpiresAt": now + timedelta(seconds=lease_s),
                "updatedAt": now,
            },
            "$inc": {"leaseEpoch": 1, "seqCeiling": SEQ_BLOCK},
            "$max": {"attempt": 1},
        },
        sort=[("priority", -1), ("createdAt", 1)],
        return_document=ReturnDocument.AFTER,
    )
    return Claim(run=doc, epoch=doc["leaseEpoch"], kind=kind) if doc else None


def next_visible_at(db: Database, kind: QueueKind) -> datetime | None:
    """When the earliest queued document that is still waiting out its retry delay turns
    claimable; an idle worker sets its wake-up timer by it."""
    doc = db[kind.collection].find_one(
        {"status": "QUEUED", "visibleAt": {"$gt": utcnow()}}, {"visibleAt": 1},
        sort=[("visibleAt", 1)])
    return doc["visibleAt"] if doc else None


def fenced_filter(claim: Claim, **extra: Any) -> dict[str, Any]:
    return {"_id": claim.run_id, "leaseEpoch": claim.epoch, **extra}


def _held(claim: Claim) -> dict[str, Any]:
    return fenced_filter(claim, status={"$in": sorted(claim.kind.leased)})


def set_status(
    db: Database, claim: Claim, target: RunStatus | IdeationStatus | str,
    fields: dict[str, Any] | None = None,
) -> bool:
    """Move the claimed document to `target` if the lifecycle allows and the lease is ours.

    Leaving the leased statuses (done, failed, canceled, awaiting a human) ends the lease.
    """
    target = str(target)
    sets = {"status": target, "updatedAt": utcnow(), **(fields or {})}
    if target not in claim.kind.leased:
        sets["leaseExpiresAt"] = None
    flt = claim.kind.filter(claim.run_id, target, leaseEpoch=claim.epoch)
    return db[claim.kind.collection].update_one(flt, {"$set": sets}).modified_count == 1


def record_step(db: Database, claim: Claim, step: str, record: dict[str, Any]) -> bool:
    """Write the step record (status, times, output keys) while the lease is ours."""
    sets = {f"steps.{step}.{k}": v for k, v in record.items()}
    sets["updatedAt"] = utcnow()
    return db.runs.update_one(fenced_filter(claim), {"$set": sets}).modified_count == 1


def finish_step(db: Database, claim: Claim, step: str, record: dict[str, Any]) -> bool:
    """Close the step record and append it to `stepHistory` (one entry per execution)."""
    sets = {f"steps.{step}.{k}": v for k, v in record.items()}
    sets["updatedAt"] = utcnow()
    current = (claim.run.get("steps") or {}).get(step) or {}
    entry = {"step": step, "epoch": claim.epoch, "pod": claim.run.get("claimedBy"),
             "startedAt": record.get("startedAt", current.get("startedAt")), **record}
    # $addToSet: a write retried after a lost reply adds the same entry once
    result = db.runs.update_one(fenced_filter(claim),
                                {"$set": sets, "$addToSet": {"stepHistory": entry}})
    return result.modified_count == 1


def renew(db: Database, claim: Claim, lease_s: float) -> dict[str, Any] | None:
    """Extend the lease; the document's `status` and `cancelRequested`, or None if lost."""
    now = utcnow()
    return db[claim.kind.collection].find_one_and_update(
        _held(claim),
        {"$set": {"leaseExpiresAt": now + timedelta(seconds=lease_s), "leaseRenewedAt": now}},
        projection={"status": 1, "cancelRequested": 1},
    )


def peek(db: Database, claim: Claim) -> dict[str, Any] | None:
    """The document's `status` and `cancelRequested` while the lease is ours, else None."""
    return db[claim.kind.collection].find_one(_held(claim), {"status": 1, "cancelRequested": 1})


def holds(db: Database, claim: Claim) -> bool:
    return peek(db, claim) is not None


def backoff_s(attempt: int, base_s: float, max_s: float) -> float:
    """The delay after failed attempt `attempt`: base·2^(attempt-1) capped at `max_s`, with
    jitter (drawn from its upper half) so that runs failed together do not return together."""
    return min(max_s, base_s * 2 ** max(0, attempt - 1)) * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff_s: float = 30.0
    backoff_max_s: float = 900.0


def _next_seq(doc: dict[str, Any]) -> int:
    return max(int(doc.get("lastEventSeq") or 0), int(doc.get("seqCeiling") or 0)) + 1


def _hand_back(
    db: Database, kind: QueueKind, doc: dict[str, Any], target: str, now: datetime, *,
    extra_filter: dict[str, Any], sets: dict[str, Any], new_attempt: bool = False,
    visible_at: datetime | None = None, fence: bool = True,
) -> HandBack | None:
    """Move a held document out of the worker's hands, conditioned on the epoch it had.

    With `fence` the epoch is incremented, so its last holder can write nothing more (and
    its late events are stale); a holder ending its own run for good keeps the epoch, so
    its final events still project.
    """
    attempt = int(doc.get("attempt") or 0) + (1 if new_attempt else 0)
    epoch = int(doc.get("leaseEpoch") or 0)
    seq = _next_seq(doc) if kind is RUNS and fence else None
    update: dict[str, Any] = {
        "$set": {"status": target, "updatedAt": now, "leaseExpiresAt": None, **sets},
        "$inc": {"leaseEpoch": 1 if fence else 0},
    }
    if target == RunStatus.QUEUED:
        update["$set"].update(claimedBy=None, visibleAt=visible_at)
    if new_attempt:
        update["$inc"].update(attempt=1, retryCount=1)
    if seq is not None:
        update["$max"] = {"lastEventSeq": seq, "seqCeiling": seq}
    flt = kind.filter(doc["_id"], target, leaseEpoch=doc.get("leaseEpoch", 0), **extra_filter)
    if db[kind.collection].update_one(flt, update).modified_count != 1:
        return None
    return HandBack(doc["_id"], target, doc["status"], attempt, epoch + (1 if fence else 0),
                    seq, visible_at)


def _give_up_or_requeue(
    db: Database, kind: QueueKind, doc: dict[str, Any], now: datetime, policy: RetryPolicy,
    error: dict[str, Any], *, retryable: bool, extra_filter: dict[str, Any], own: bool,
) -> HandBack | None:
    attempt = int(doc.get("attempt") or 1)
    if doc.get("cancelRequested") and kind is RUNS:
        return _hand_back(db, kind, doc, RunStatus.CANCELED.value, now,
                          extra_filter=extra_filter, sets={"canceledAt": now}, fence=not own)
    if retryable and attempt < policy.max_attempts:
        visible = now + timedelta(seconds=backoff_s(attempt, policy.backoff_s,
                                                    policy.backoff_max_s))
        return _hand_back(db, kind, doc, RunStatus.QUEUED, now, extra_filter={
            **extra_filter, "cancelRequested": None}, sets={"lastError": error},
            new_attempt=True, visible_at=visible)
    if kind is RUNS:
        fail = {"failedAt": now, "errorType": error["code"], "errorMessage": error["message"],
                "errorTraceback": error.get("traceback"), "retryable": retryable}
    else:
        fail = {"failedAt": now, "error": error["message"], "errorType": error["code"]}
    return _hand_back(db, kind, doc, RunStatus.FAILED, now, extra_filter=extra_filter, sets=fail,
                      fence=not own)


def release(db: Database, claim: Claim) -> HandBack | None:
    """Give the document back to the queue at once (a worker shutting down): no new attempt,
    no delay, finished steps kept. A run whose cancel was requested is canceled instead."""
    doc = db[claim.kind.collection].find_one(_held(claim))
    if doc is None:
        return None
    now = utcnow()
    if doc.get("cancelRequested") and claim.kind is RUNS:
        return _hand_back(db, claim.kind, doc, RunStatus.CANCELED.value, now,
                          extra_filter={}, sets={"canceledAt": now})
    return _hand_back(db, claim.kind, doc, RunStatus.QUEUED, now,
                      extra_filter={"cancelRequested": None}, sets={})


def retry_or_fail(
    db: Database, claim: Claim, error: dict[str, Any], *, retryable: bool, policy: RetryPolicy,
) -> HandBack | None:
    """After a failed attempt: re-queue with backoff while attempts are left and the error is
    retryable, else fail for good (`error`: code, message, traceback?). None if not ours."""
    doc = db[claim.kind.collection].find_one(_held(claim))
    if doc is None:
        return None
    return _give_up_or_requeue(db, claim.kind, doc, utcnow(), policy, error,
                               retryable=retryable, extra_filter={}, own=True)


def expired(db: Database, kind: QueueKind, limit: int = 100) -> list[dict[str, Any]]:
    return list(db[kind.collection].find(
        {"status": {"$in": sorted(kind.leased)}, "leaseExpiresAt": {"$lt": utcnow()}},
        limit=limit))


def reap(db: Database, kind: QueueKind, doc: dict[str, Any], policy: RetryPolicy
         ) -> HandBack | None:
    """Take back one document whose lease expired: re-queue with a new attempt and backoff,
    or fail it with LEASE_LOST when its attempts are spent. Conditioned on the epoch and
    expiry read, so concurrent reapers (and a late renewal) cannot both win."""
    now = utcnow()
    error = {"code": "LEASE_LOST", "at": now,
             "message": f"the lease of {doc.get('claimedBy')} expired (attempt "
                        f"{doc.get('attempt')}) without a renewal"}
    return _give_up_or_requeue(db, kind, doc, now, policy, error, retryable=True,
                               extra_filter={"leaseExpiresAt": {"$lt": now}}, own=False)


@dataclass(frozen=True)
class CancelOutcome:
    """`CANCELED` (it was not running), `CANCEL_REQUESTED` (its worker will stop it),
    `FINAL` (already finished), or `NOT_FOUND`."""

    outcome: CancelResult
    status: str | None = None
    hand_back: HandBack | None = None


def request_cancel(db: Database, run_id: str, by: str | None, reason: str | None
                   ) -> CancelOutcome:
    """Cancel a run: at once when no worker holds it, else by flagging it for its worker."""
    for _ in range(10):  # the run may change hands between the read and the write
        doc = db.runs.find_one({"_id": run_id})
        if doc is None:
            return CancelOutcome(CancelResult.NOT_FOUND)
        status = doc["status"]
        if RunStatus(status) in TERMINAL:
            return CancelOutcome(CancelResult.FINAL, status)
        now = utcnow()
        if status in RUNS.leased:
            flag = {"at": now, "by": by, "reason": reason}
            if db.runs.update_one({"_id": run_id, "status": status,
                                   "leaseEpoch": doc.get("leaseEpoch", 0)},
                                  {"$set": {"cancelRequested": flag, "updatedAt": now}}
                                  ).modified_count == 1:
                return CancelOutcome(CancelResult.CANCEL_REQUESTED, status)
        elif can_transition(status, RunStatus.CANCELED):
            done = _hand_back(db, RUNS, doc, RunStatus.CANCELED.value, now,
                              extra_filter={"status": status},
                              sets={"canceledAt": now, "cancelRequested": {
                                  "at": now, "by": by, "reason": reason}})
            if done:
                return CancelOutcome(CancelResult.CANCELED, done.status, done)
    raise RuntimeError(f"run {run_id} kept changing while being canceled")
