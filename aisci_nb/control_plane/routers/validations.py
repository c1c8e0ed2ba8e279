"""`/validations`: runs awaiting a person's verdict, oldest first, with the review summary
and the PDF one click away; twin `GET /api/validations`. The verdict itself is
`POST /api/validations/{run_id}/human`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from ..auth import UserDep
from ..deps import StateDep
from ..pages import templates
from ..readmodel.validations import validation_queue
from .common import as_json

router = APIRouter()


@router.get("/validations", response_class=HTMLResponse, include_in_schema=False)
async def validations_page(request: Request, state: StateDep, user: UserDep) -> HTMLResponse:
    runs = await run_in_threadpool(validation_queue, state.db)
    return templates.TemplateResponse(request, "validations.html", {"runs": runs})


@router.get("/api/validations", tags=["validations"])
async def validations_api(state: StateDep, user: UserDep) -> JSONResponse:
    """Runs AWAITING_HUMAN, oldest first, each with its auto review and PDF key."""
    return as_json({"runs": await run_in_threadpool(validation_queue, state.db)})
