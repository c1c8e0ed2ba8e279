"""`POST /api/runs/{run_id}/cancel`: cancel a queued run at once, flag a running one;
`POST /api/runs/{run_id}/rerun`: re-queue a finished run to start at a given step.

It changes what runs: operators only (a session with its CSRF token, or an API token),
recorded in the audit trail. Worker keys and run tokens can do neither.
"""

from __future__ import annotations

import socket
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..queue.cancel import cancel_run
from ..queue.rerun import RerunRefused, rerun_from
from ..worker.pipelines import PIPELINE_STEP_NAMES
from .accounts import audit
from .auth import OperatorDep
from .deps import StateDep

router = APIRouter(prefix="/api/runs")


class CancelRequest(BaseModel):
    reason: str | None = Field(None, max_length=2000)


@router.post("/{run_id}/cancel")
async def cancel(run_id: str, state: StateDep, user: OperatorDep,
                 body: Annotated[CancelRequest | None, Body()] = None) -> JSONResponse:
    """200 CANCELED when no worker held the run; 202 CANCEL_REQUESTED when its worker will
    stop it (within seconds); 404 unknown run; 409 already finished."""
    body = body or CancelRequest()
    outcome = await run_in_threadpool(
        cancel_run, state.db, run_id, by=user.name, reason=body.reason,
        source=f"controlplane://{socket.gethostname()}")
    await run_in_threadpool(audit, state.db, user, "cancel", run_id, outcome=outcome.outcome,
                            reason=body.reason)
    if outcome.outcome == "NOT_FOUND":
        raise HTTPException(404, f"no run {run_id}")
    if outcome.outcome == "FINAL":
        raise HTTPException(409, f"run {run_id} is already {outcome.status}")
    code = 200 if outcome.outcome == "CANCELED" else 202
    return JSONResponse({"run_id": run_id, "status": outcome.outcome}, status_code=code)


class RerunRequest(BaseModel):
    from_step: str = Field(alias="from", min_length=1, max_length=100,
                           description="the first step to run again (e.g. Writeup)")
    reason: str | None = Field(None, max_length=2000)


@router.post("/{run_id}/rerun")
async def rerun(run_id: str, body: RerunRequest, state: StateDep,
                user: OperatorDep) -> JSONResponse:
    """202 QUEUED (starts at `from`, earlier steps reused); 404 unknown run; 409 a run that
    is not finished or whose earlier steps did not complete; 422 an unknown step."""
    try:
        done = await run_in_threadpool(rerun_from, state.db, run_id, body.from_step,
                                       steps=PIPELINE_STEP_NAMES, by=user.name,
                                       reason=body.reason, source="controlplane://api")
    except RerunRefused as exc:
        raise HTTPException(404 if exc.status is None else 409, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    await run_in_threadpool(audit, state.db, user, "rerun", run_id, from_step=done.from_step,
                            reason=body.reason)
    return JSONResponse({"run_id": run_id, "status": "QUEUED", "from": done.from_step,
                         "steps": done.reset, "previous": done.previous}, status_code=202)
