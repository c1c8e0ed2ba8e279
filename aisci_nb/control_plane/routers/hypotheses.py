"""`/hypotheses` and `/hypotheses/{id}` (ideation state, the ideas with their seven fields,
"run this idea", the runs), with their twins; creating one is `POST /api/hypotheses`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..accounts import audit
from ..actions import ActionRefused, run_idea
from ..auth import OperatorDep, UserDep
from ..deps import StateDep
from ..pages import templates
from ..readmodel.hypotheses import hypothesis_detail, list_hypotheses
from .common import as_json

router = APIRouter()


@router.get("/hypotheses", response_class=HTMLResponse, include_in_schema=False)
async def hypotheses_page(request: Request, state: StateDep, user: UserDep,
                          page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> HTMLResponse:
    data = await run_in_threadpool(list_hypotheses, state.db, page)
    return templates.TemplateResponse(request, "hypotheses.html", data)


@router.get("/api/hypotheses", tags=["hypotheses"])
async def hypotheses_api(state: StateDep, user: UserDep,
                         page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> JSONResponse:
    """Hypotheses newest first, with their ideation status and number of runs."""
    return as_json(await run_in_threadpool(list_hypotheses, state.db, page))


async def _detail(state, hypothesis_id: str) -> dict:
    data = await run_in_threadpool(hypothesis_detail, state.db, hypothesis_id)
    if data is None:
        raise HTTPException(404, f"no hypothesis {hypothesis_id}")
    return data


@router.get("/hypotheses/{hypothesis_id}", response_class=HTMLResponse,
            include_in_schema=False)
async def hypothesis_page(hypothesis_id: str, request: Request, state: StateDep,
                          user: UserDep) -> HTMLResponse:
    return templates.TemplateResponse(request, "hypothesis.html",
                                      await _detail(state, hypothesis_id))


@router.get("/api/hypotheses/{hypothesis_id}/detail", tags=["hypotheses"])
async def hypothesis_api(hypothesis_id: str, state: StateDep, user: UserDep) -> JSONResponse:
    """The hypothesis page's data: the hypothesis, its ideation, ideas and runs."""
    return as_json(await _detail(state, hypothesis_id))


class RunIdea(BaseModel):
    priority: int = Field(0, ge=-1000, le=1000)
    region: str | None = Field(None, max_length=100)


@router.post("/api/hypotheses/{hypothesis_id}/ideas/{index}/run", status_code=201,
             tags=["hypotheses"])
async def run_this_idea(hypothesis_id: str, index: int, state: StateDep, user: OperatorDep,
                        body: RunIdea | None = None) -> JSONResponse:
    """Queue a run of idea number `index` (0-based); 201 with the run id."""
    body = body or RunIdea()
    try:
        run = await run_in_threadpool(run_idea, state.db, hypothesis_id, index, user.name,
                                      body.priority, body.region)
    except ActionRefused as exc:
        raise HTTPException(409, str(exc)) from None
    if run is None:
        raise HTTPException(404, f"no hypothesis {hypothesis_id}")
    await run_in_threadpool(audit, state.db, user, "run_idea", hypothesis_id,
                            idea=index, run=run["_id"])
    return JSONResponse({"run_id": run["_id"], "hypothesis_id": hypothesis_id,
                         "idea": index, "status": "QUEUED"}, status_code=201)
