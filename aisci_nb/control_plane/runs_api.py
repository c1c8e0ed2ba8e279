"""`POST /api/runs/{run_id}/cancel`: cancel a queued run at once, flag a running one.

It changes what runs, so it takes the same bearer keys as the ingest.
"""

from __future__ import annotations

import socket
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..queue.cancel import cancel_run
from .deps import StateDep, require_ingest_auth

router = APIRouter(prefix="/api/runs", dependencies=[Depends(require_ingest_auth)])


class CancelRequest(BaseModel):
    by: str | None = Field(None, max_length=200, description="who cancels (shown in the UI)")
    reason: str | None = Field(None, max_length=2000)


@router.post("/{run_id}/cancel")
async def cancel(run_id: str, state: StateDep,
                 body: Annotated[CancelRequest | None, Body()] = None) -> JSONResponse:
    """200 CANCELED when no worker held the run; 202 CANCEL_REQUESTED when its worker will
    stop it (within seconds); 404 unknown run; 409 already finished."""
    body = body or CancelRequest()
    outcome = await run_in_threadpool(
        cancel_run, state.db, run_id, by=body.by or "api", reason=body.reason,
        source=f"controlplane://{socket.gethostname()}")
    if outcome.outcome == "NOT_FOUND":
        raise HTTPException(404, f"no run {run_id}")
    if outcome.outcome == "FINAL":
        raise HTTPException(409, f"run {run_id} is already {outcome.status}")
    code = 200 if outcome.outcome == "CANCELED" else 202
    return JSONResponse({"run_id": run_id, "status": outcome.outcome}, status_code=code)
