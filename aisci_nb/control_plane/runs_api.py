"""`POST /api/runs/{run_id}/cancel`: cancel a queued run at once, flag a running one.

It changes what runs: operators only (a session with its CSRF token, or an API token),
recorded in the audit trail. Worker keys and run tokens cannot cancel.
"""

from __future__ import annotations

import socket
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..queue.cancel import cancel_run
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
