"""Carrying one claimed document to its end: the run's steps in order, then its outcome.

A re-claimed run skips its finished steps. Every ending goes through one of three doors:
completed, failed (re-queued while a retryable failure has attempts left), or interrupted
(taken over, canceled, released at shutdown), and each answers an `Outcome`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..contract.failures import Failure
from ..contract.lifecycle import IdeationStatus, Outcome, RunStatus, StepStatus
from ..db import utcnow
from ..queue import claims
from ..queue.dbretry import with_db_retry
from ..queue.queue_log import log_hand_back
from ..runtime.execute import StepError
from . import ideation
from .session import RunSession
from .telemetry import gpu_name

if TYPE_CHECKING:
    from .loop import Worker

log = logging.getLogger("aisci.worker")


def carry(w: Worker, session: RunSession) -> Outcome:
    """The run's steps in order from where it stands; its outcome."""
    claim = session.claim
    started = w.clock()
    log.info("claimed run %s (attempt %s, epoch %s)", claim.run_id, claim.run.get("attempt"),
             claim.epoch)
    pod = {"id": w.pod_id, "gpu": gpu_name(), "region": w.settings.worker_region}
    if not with_db_retry(claims.set_status, w.db, claim, RunStatus.RUNNING,
                         {"startedAt": utcnow(), "pod": pod}):
        session.lease.lost.set()
        return interrupted(w, session)
    session.emit("ai.run.started", pod_id=pod["id"], gpu=pod["gpu"], region=pod["region"])
    idea = load_idea(w, claim)
    finished = {name for name, record in (claim.run.get("steps") or {}).items()
                if record.get("status") == StepStatus.COMPLETED}
    if finished:
        log.info("run %s resumes after %s", claim.run_id, ", ".join(sorted(finished)))
    for step in w.steps:
        if session.interrupted:
            break
        if step.name in finished:
            continue  # its outputs reach the later steps as their inputs
        failure = w.run_step(session, step, idea)
        w.emitter.adopt_orphans()  # what the step's kernel could not deliver
        if session.interrupted:
            break
        if failure:
            return fail(w, session, failure)
    if session.interrupted:
        return interrupted(w, session)
    return complete(w, session, round(w.clock() - started, 3))


def complete(w: Worker, session: RunSession, total_s: float) -> Outcome:
    session.lease.stop()  # our own final write must not look like a takeover to it
    if not with_db_retry(claims.set_status, w.db, session.claim, RunStatus.COMPLETED,
                         {"completedAt": utcnow(), "totalDuration_s": total_s}):
        return Outcome.LOST
    session.emit("ai.run.completed", total_duration_s=total_s)
    return Outcome.COMPLETED


def load_idea(w: Worker, claim: claims.Claim) -> dict:
    hyp_id = claim.run.get("hypothesisId")
    hyp = with_db_retry(w.db.hypotheses.find_one, {"_id": hyp_id}) if hyp_id else None
    if hyp is None:
        raise LookupError(f"run {claim.run_id}: hypothesis {hyp_id!r} not found")
    # A run queued for one of the hypothesis's ideas ("run this idea") carries it.
    idea = claim.run.get("idea") or hyp.get("ideaJson")
    if not isinstance(idea, dict):
        raise ValueError(f"hypothesis {hyp_id}: ideaJson is missing or not an object")
    return idea


def fail(w: Worker, session: RunSession, failure: Failure) -> Outcome:
    """Re-queue a retryable failure while attempts are left, else fail the run for good."""
    claim = session.claim
    if session.lease:
        session.lease.stop()
    # Written to MongoDB directly: scrubbed like everything the worker sends.
    detail = w.scrubber.obj({"code": failure.code, "message": failure.message,
                             "traceback": failure.traceback, "stage": failure.stage})
    detail["at"] = utcnow()
    done = with_db_retry(claims.retry_or_fail, w.db, claim, detail,
                         retryable=failure.retryable, policy=w.policy)
    if done is None:
        return Outcome.LOST
    if done.status == RunStatus.QUEUED:
        log.warning("%s %s: %s (retryable); re-queued as attempt %s, visible at %s",
                    claim.kind.name, claim.run_id, failure.code, done.attempt,
                    done.visible_at)
    if done.status == RunStatus.CANCELED:
        flag = session.canceled or {}
        session.emit("ai.run.canceled", by=flag.get("by"), reason=flag.get("reason"))
    else:
        # Emitted after the write: a re-queued run's event carries the old epoch, so the
        # control plane logs it without touching the run.
        data = failure.event_data(claim.run_id)
        data.pop("run_id")
        if isinstance(failure, StepError) and failure.cell_index is not None:
            # where `aisci debug` opens the notebook
            data.update(cell_index=failure.cell_index, cell_id=failure.cell_id)
        session.emit("ai.run.failed", **data)
    return Outcome(done.status)


def interrupted(w: Worker, session: RunSession) -> Outcome:
    """End a run that was stopped: taken over, canceled, or released at shutdown."""
    claim = session.claim
    if session.lost:
        log.warning("%s %s: lease epoch %s was taken over; dropped it", claim.kind.name,
                    claim.run_id, claim.epoch)
        return Outcome.LOST
    session.lease.stop()
    if session.canceled is not None:
        flag = session.canceled
        if not with_db_retry(claims.set_status, w.db, claim, RunStatus.CANCELED,
                             {"canceledAt": utcnow()}):
            return Outcome.LOST
        session.emit("ai.run.canceled", by=flag.get("by"), reason=flag.get("reason"))
        log.info("run %s canceled", claim.run_id)
        return Outcome.CANCELED
    done = with_db_retry(claims.release, w.db, claim)
    if done is None:
        return Outcome.LOST
    if claim.kind is claims.RUNS:
        log_hand_back(w.db, claim.run_id, done, source=w.source,
                      reason=f"released by {w.pod_id} shutting down")
    log.info("%s %s released (%s)", claim.kind.name, claim.run_id, done.status)
    return Outcome(done.status)


def ideate(w: Worker, session: RunSession) -> Outcome:
    """Serve a claimed ideation request (see `worker.ideation`)."""
    claim = session.claim
    log.info("claimed ideation request %s", claim.run_id)
    hypothesis = with_db_retry(ideation.start, w.db, claim)
    try:
        ideas, error = ideation.generate_ideas(hypothesis, claim.run), None
    except ValueError as exc:
        ideas, error = [], str(exc)
    if session.interrupted:
        return interrupted(w, session)
    session.lease.stop()
    if not with_db_retry(ideation.finish, w.db, claim, ideas, error):
        return Outcome.LOST
    if error is not None:
        log.warning("ideation request %s failed: %s", claim.run_id, error)
        return Outcome(IdeationStatus.FAILED)
    w.emitter.emit("ai.ideation.generated", {
        "hypothesis_id": claim.run["hypothesisId"], "request_id": claim.run_id,
        "count": len(ideas)}, epoch=claim.epoch)
    return Outcome(IdeationStatus.COMPLETED)
