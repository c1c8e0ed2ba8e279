"""The run lifecycle: the one place that says which status may follow which.

Every writer (queue, worker, ingest projection) goes through `transition_filter` so that a
status change is a conditional update: a replayed or late event can never move a run
backwards, and two racing writers cannot both win.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    QUEUED = "QUEUED"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    AUTO_VALIDATING = "AUTO_VALIDATING"
    AWAITING_HUMAN = "AWAITING_HUMAN"
    HUMAN_VALIDATED = "HUMAN_VALIDATED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


TERMINAL = frozenset({RunStatus.HUMAN_VALIDATED, RunStatus.COMPLETED, RunStatus.FAILED,
                      RunStatus.CANCELED})

_FORWARD: dict[RunStatus, set[RunStatus]] = {
    RunStatus.QUEUED: {RunStatus.SCHEDULED},
    # A scheduled run may go back to the queue (released or reaped) or start.
    RunStatus.SCHEDULED: {RunStatus.RUNNING, RunStatus.QUEUED},
    RunStatus.RUNNING: {RunStatus.AUTO_VALIDATING, RunStatus.COMPLETED, RunStatus.QUEUED},
    # The review step runs under the worker's lease: a crashed worker's run is re-queued too.
    RunStatus.AUTO_VALIDATING: {RunStatus.AWAITING_HUMAN, RunStatus.QUEUED},
    RunStatus.AWAITING_HUMAN: {RunStatus.HUMAN_VALIDATED},
}

ALLOWED: dict[RunStatus, frozenset[RunStatus]] = {
    status: frozenset(
        _FORWARD.get(status, set())
        | ({RunStatus.FAILED, RunStatus.CANCELED} if status not in TERMINAL else set())
    )
    for status in RunStatus
}


# How far along the lifecycle a status is. The projection of events only ever moves a run
# to a higher rank, so events applied in any order end in the same status.
RANK: dict[RunStatus, int] = {
    RunStatus.QUEUED: 0,
    RunStatus.SCHEDULED: 1,
    RunStatus.RUNNING: 2,
    RunStatus.AUTO_VALIDATING: 3,
    RunStatus.AWAITING_HUMAN: 4,
    **{s: 10 for s in TERMINAL},
}


def sources_for(target: RunStatus) -> list[RunStatus]:
    """The statuses from which `target` may be reached."""
    return [s for s, nxt in ALLOWED.items() if target in nxt]


def can_transition(current: RunStatus | str, target: RunStatus | str) -> bool:
    return RunStatus(target) in ALLOWED[RunStatus(current)]


def transition_filter(run_id: str, target: RunStatus, **extra: Any) -> dict[str, Any]:
    """A MongoDB filter matching the run only while it may move to `target`."""
    return {"_id": run_id, "status": {"$in": [s.value for s in sources_for(target)]}, **extra}


def behind(target: RunStatus) -> list[RunStatus]:
    """Statuses an event reporting `target` may advance: those of lower rank.

    Events can arrive late or out of order (a `completed` before its `started`), so the
    projection skips intermediate states instead of requiring each step; it never moves a
    run backwards, and a terminal status is final.
    """
    return [s for s in RunStatus if RANK[s] < RANK[target]]


def advance_filter(run_id: str, target: RunStatus) -> dict[str, Any]:
    return {"_id": run_id, "status": {"$in": [s.value for s in behind(target)]}}


# Statuses in which a worker holds the run under a lease: the ones it may be re-queued from.
LEASED = frozenset(sources_for(RunStatus.QUEUED))


class IdeationStatus(StrEnum):
    """An ideation request: queued, held by one worker, then done or failed."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


IDEATION_ALLOWED: dict[IdeationStatus, frozenset[IdeationStatus]] = {
    IdeationStatus.QUEUED: frozenset({IdeationStatus.RUNNING, IdeationStatus.FAILED}),
    IdeationStatus.RUNNING: frozenset({IdeationStatus.QUEUED, IdeationStatus.COMPLETED,
                                       IdeationStatus.FAILED}),
    IdeationStatus.COMPLETED: frozenset(),
    IdeationStatus.FAILED: frozenset(),
}


def ideation_transition_filter(
    request_id: str, target: IdeationStatus, **extra: Any
) -> dict[str, Any]:
    """Like `transition_filter`, for `ideation_requests`."""
    sources = [s.value for s, nxt in IDEATION_ALLOWED.items() if target in nxt]
    return {"_id": request_id, "status": {"$in": sources}, **extra}


class StepStatus(StrEnum):
    """A step record's status on the run (`steps.<name>.status`)."""

    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    RELEASED = "RELEASED"  # the worker shut down mid-step; another one runs it again


class Outcome(StrEnum):
    """What a worker's `process` answers for one claimed document: where it left it."""

    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    QUEUED = "QUEUED"  # released at shutdown or re-queued for a retry
    LOST = "LOST"  # the lease was taken over: this worker wrote nothing more


class CancelResult(StrEnum):
    """What asking to cancel a run did."""

    CANCELED = "CANCELED"  # it was not running: canceled at once
    CANCEL_REQUESTED = "CANCEL_REQUESTED"  # its worker will stop it
    FINAL = "FINAL"  # it had already finished
    NOT_FOUND = "NOT_FOUND"
