"""`/` (the overview: counts per status, workers, newest runs, the new-hypothesis form) and
its twin `GET /api/overview`; `POST /api/hypotheses/draft` fills the form from notes."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..auth import OperatorDep, UserDep
from ..deps import StateDep
from ..draft import MAX_NOTES, DraftError, draft
from ..pages import templates
from ..readmodel.overview import overview as read_overview
from .common import as_json

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index(request: Request, state: StateDep, user: UserDep) -> HTMLResponse:
    data = await run_in_threadpool(read_overview, state.db)
    return templates.TemplateResponse(request, "index.html", data)


@router.get("/api/overview", tags=["pages"])
async def overview(state: StateDep, user: UserDep) -> JSONResponse:
    """Runs per status (all nine), workers seen in the last 30 minutes, the newest runs."""
    return as_json(await run_in_threadpool(read_overview, state.db))


class DraftRequest(BaseModel):
    notes: str = Field(min_length=1, max_length=MAX_NOTES,
                       description="a pasted conversation or notes")


@router.post("/api/hypotheses/draft", tags=["hypotheses"])
async def draft_hypothesis(body: DraftRequest, state: StateDep, user: OperatorDep) -> dict:
    """A title and hypothesis drafted by the LLM (role ideation) for the form; not stored."""
    try:
        return await run_in_threadpool(draft, state.settings, body.notes)
    except DraftError as exc:
        raise HTTPException(422, str(exc)) from None
    except Exception as exc:  # the provider's errors (auth, outage, budget): not the input's
        raise HTTPException(503, f"the LLM could not draft: {exc}") from None
