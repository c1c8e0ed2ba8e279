"""Carrying one claimed document to its end: the run's steps in order, then its outcome.

A re-claimed run skips its finished steps. Every ending goes through one of three doors:
completed, failed (re-queued while a retryable failure has attempts left), or interrupted
(taken over, canceled, released at shutdown), and each answers an `Outcome`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from ..contract.failures import Failure, FailureCode
from ..contract.lifecycle import IdeationStatus, Outcome, RunStatus, StepStatus
from ..db import utcnow
from ..errors import IdeationError
from ..queue import claims
from ..queue.dbretry import with_db_retry
from ..queue.queue_log import log_hand_back
from ..runtime.execute import StepError
from . import ideation
from .pipelines import IDEATION_STEP
from .session import RunSession
from .step import run_dir
from .telemetry import gpu_name
from .usage import seed_ledger

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
    seed_ledger(claim.run, run_dir(w.settings, claim))  # the LLM budget spans steps and pods
    finished = {name for name, record in (claim.run.get("steps") or {}).items()
                if record.get("status") == StepStatus.COMPLETED}
    if finished:
        log.info("run %s resumes after %s", claim.run_id, ", ".join(sorted(finished)))
    for step in w.steps:
        if session.interrupted:
            break
        if step.name in finished:
            continue  # its outputs reach the later steps as their inputs
        if step.validation and not advance(w, session,
                                                              RunStatus.AUTO_VALIDATING):
            return interrupted(w, session)
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
    if any(step.validation for step in w.steps):
        # Reviewed: a person has the last word (`aisci validate`); never COMPLETED here.
        if not advance(w, session, RunStatus.AUTO_VALIDATING):  # resumed after the review
            return interrupted(w, session)
        session.lease.stop()
        if not advance(w, session, RunStatus.AWAITING_HUMAN, {"totalDuration_s": total_s}):
            return Outcome.LOST
        return Outcome.AWAITING_HUMAN
    session.lease.stop()  # our own final write must not look like a takeover to it
    if not with_db_retry(claims.set_status, w.db, session.claim, RunStatus.COMPLETED,
                         {"completedAt": utcnow(), "totalDuration_s": total_s}):
        return Outcome.LOST
    session.emit("ai.run.completed", total_duration_s=total_s)
    return Outcome.COMPLETED


def advance(w: Worker, session: RunSession, target: RunStatus,
            fields: dict | None = None) -> bool:
    """Move the held run to `target` (no-op if it is there already), with the event that
    says so; False when the lease was lost."""
    current = (with_db_retry(claims.peek, w.db, session.claim) or {}).get("status")
    if current == target.value:
        return True
    if not with_db_retry(claims.set_status, w.db, session.claim, target,
                         {"updatedAt": utcnow(), **(fields or {})}):
        if target.value in session.claim.kind.leased:
            session.lease.lost.set()  # else the keeper is stopped and cannot tell
        return False
    session.emit("ai.run.status_changed", **{"from": current or RunStatus.RUNNING.value,
                                             "to": target.value})
    return True


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
    """Serve a claimed ideation request: its notebook, executed like a stage (events, cell
    progress, the executed notebook under `ideation/{id}/`), then the ideas recorded on the
    request and its hypothesis (and, with `autoRun`, the first idea's run queued), or the
    failure (see `worker.ideation`)."""
    claim = session.claim
    request = claim.run
    log.info("claimed ideation request %s (attempt %s)", claim.run_id, request.get("attempt"))
    hypothesis = with_db_retry(ideation.start, w.db, claim)
    if hypothesis is None:
        return ideation_failed(w, session, Failure(
            FailureCode.NOT_FOUND, f"hypothesis {request.get('hypothesisId')!r} not found"))
    # The request's own knobs, as parameters the notebook declares (plain data).
    step = replace(IDEATION_STEP, parameters={
        **IDEATION_STEP.parameters, "hypothesis": ideation.hypothesis_text(hypothesis),
        "reflections": int(request.get("reflections") or 3),
        "num_ideas": int(request.get("maxNumGenerations") or 1)})
    idea = hypothesis.get("ideaJson") if isinstance(hypothesis.get("ideaJson"), dict) else {}
    # Always the notebook: the ideas come from its working directory.
    failure = w.runner(session, step, idea)
    w.emitter.adopt_orphans()  # what the step's kernel could not deliver
    if session.interrupted:
        outcome = interrupted(w, session)
        if outcome is Outcome.QUEUED:
            with_db_retry(ideation.mirror_failure, w.db, claim, IdeationStatus.QUEUED.value,
                          "released by a worker shutting down")
        return outcome
    if failure is not None:
        return ideation_failed(w, session, failure)
    try:
        result = ideation.read_result(run_dir(w.settings, claim) / "cwd")
    except IdeationError as exc:
        return ideation_failed(w, session, Failure(FailureCode.INVALID_RESULT, str(exc)))
    session.lease.stop()
    run_id = with_db_retry(ideation.complete, w.db, claim, result)
    if run_id is None:
        return Outcome.LOST
    ideas = result["ideas"]
    w.emitter.emit("ai.ideation.generated", {
        "hypothesis_id": request["hypothesisId"], "request_id": claim.run_id,
        "count": len(ideas), "top_k": 1}, epoch=claim.epoch)
    log.info("ideation request %s: %d idea(s)%s", claim.run_id, len(ideas),
             f"; run {run_id} queued" if run_id else "")
    return Outcome(IdeationStatus.COMPLETED)


def ideation_failed(w: Worker, session: RunSession, failure: Failure) -> Outcome:
    """Re-queue a retryable failure while attempts are left, else fail for good; the
    hypothesis shows which, with the reason."""
    outcome = fail(w, session, failure)
    if outcome is not Outcome.LOST:
        reason = f"{failure.code}: {failure.message}"
        with_db_retry(ideation.mirror_failure, w.db, session.claim, outcome.value, reason)
        log.warning("ideation request %s %s: %s", session.claim.run_id, outcome.value, reason)
    return outcome
