"""`POST /api/validations/{run_id}/human`: a person's verdict on a run awaiting one.

Operators only (a session with its CSRF token, or an API token), recorded in the audit
trail; the verdict never comes through ingest."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..queue.validation import ValidationRefused, record_human_verdict
from .accounts import audit
from .auth import OperatorDep
from .deps import StateDep

router = APIRouter(prefix="/api/validations")


class HumanVerdict(BaseModel):
    verdict: Literal["pass", "fail"]
    notes: str | None = Field(None, max_length=10_000)
    by: str | None = Field(None, max_length=200, description="the reviewer's name, shown "
                           "with the authenticated identity")


@router.post("/{run_id}/human")
async def human(run_id: str, body: HumanVerdict, state: StateDep, user: OperatorDep) -> dict:
    """200 with the run's new status; 404 unknown run; 409 the run does not await a person."""
    by = f"{body.by} ({user.name})" if body.by else user.name
    try:
        done = await run_in_threadpool(record_human_verdict, state.db, run_id, body.verdict,
                                       by=by, notes=body.notes, source="controlplane://api")
    except ValidationRefused as exc:
        raise HTTPException(404 if exc.status is None else 409, str(exc)) from None
    await run_in_threadpool(audit, state.db, user, "validate", run_id, verdict=body.verdict,
                            notes=body.notes)
    return {"run_id": run_id, "status": done.status, "validation_id": done.id,
            "verdict": done.verdict, "by": done.by}
