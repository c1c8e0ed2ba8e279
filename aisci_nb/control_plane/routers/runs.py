"""`/runs` (filters, search, pages) and `/runs/{id}` (everything about one run), with their
twins `GET /api/runs` and `GET /api/runs/{id}`; hide, unhide and retry for operators."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from ...contract.lifecycle import TERMINAL, RunStatus
from ..accounts import audit
from ..actions import ActionRefused, retry_run
from ..auth import OperatorDep, UserDep
from ..deps import StateDep
from ..pages import templates
from ..readmodel.run import LEVELS, run_detail, run_events
from ..readmodel.runs import PAGE_SIZE, RunFilter, list_runs, set_hidden
from .common import as_json

router = APIRouter()
# The experiment pipeline's steps, in order: what "re-run from step" offers.
RERUN_STEPS = ("Stage_1", "Stage_2", "Stage_3", "Stage_4", "Plots", "Writeup", "Review")


def _filter(status: str | None, hypothesis: str | None, pod: str | None, since: str | None,
            until: str | None, q: str | None, hidden: bool, page: int, size: int) -> RunFilter:
    def day(value: str | None, name: str) -> datetime | None:
        if not value:
            return None
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise HTTPException(422, f"{name}: a date like 2026-11-29") from None

    if status and status not in RunStatus.__members__:
        raise HTTPException(422, f"status: one of {', '.join(RunStatus.__members__)}")
    return RunFilter(status=status or None, hypothesis=hypothesis or None, pod=pod or None,
                     since=day(since, "since"), until=day(until, "until"), q=q or None,
                     hidden=hidden, page=page, size=size)


def _params(status: Annotated[str | None, Query(max_length=40)] = None,
            hypothesis: Annotated[str | None, Query(max_length=100)] = None,
            pod: Annotated[str | None, Query(max_length=200)] = None,
            since: Annotated[str | None, Query(max_length=40, description="YYYY-MM-DD")
                             ] = None,
            until: Annotated[str | None, Query(max_length=40, description="YYYY-MM-DD")
                             ] = None,
            q: Annotated[str | None, Query(max_length=200,
                                           description="in the hypothesis title")] = None,
            hidden: bool = False, page: Annotated[int, Query(ge=1, le=100_000)] = 1,
            size: Annotated[int, Query(ge=1, le=200)] = PAGE_SIZE) -> RunFilter:
    """The runs list's filters, shared by the page and its JSON twin."""
    return _filter(status, hypothesis, pod, since, until, q, hidden, page, size)


RunFilterDep = Annotated[RunFilter, Depends(_params)]
LINK_ARGS = ("status", "hypothesis", "pod", "since", "until", "q")


@router.get("/runs", response_class=HTMLResponse, include_in_schema=False)
async def runs_page(request: Request, state: StateDep, user: UserDep,
                    f: RunFilterDep) -> HTMLResponse:
    data = await run_in_threadpool(list_runs, state.db, f)
    args = {k: v for k in LINK_ARGS if (v := request.query_params.get(k))}
    if f.hidden:
        args["hidden"] = "true"
    return templates.TemplateResponse(request, "runs.html", {**data, "f": f, "args": args})


@router.get("/api/runs", tags=["runs"])
async def runs_api(state: StateDep, user: UserDep, f: RunFilterDep) -> JSONResponse:
    """One page of runs, newest first: `runs`, `total`, `page`, `pages`."""
    return as_json(await run_in_threadpool(list_runs, state.db, f))


def _detail(state, run_id: str, older: int, level: str | None, type_prefix: str | None
            ) -> dict[str, Any]:
    data = run_detail(state.db, run_id, older=older, level=level, type_prefix=type_prefix)
    if data is None:
        raise HTTPException(404, f"no run {run_id}")
    return data


@router.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
async def run_page(run_id: str, request: Request, state: StateDep, user: UserDep,
                   older: Annotated[int, Query(ge=0, le=10**9)] = 0,
                   level: Annotated[str | None, Query(max_length=10)] = None,
                   type: Annotated[str | None, Query(max_length=100)] = None) -> HTMLResponse:
    """`older`: how many of the newest events to skip (the "older events" link)."""
    data = await run_in_threadpool(_detail, state, run_id, older, level, type)
    return templates.TemplateResponse(request, "run.html", {
        **data, "levels": LEVELS, "level": level, "type_prefix": type,
        "older_next": older + len(data["events"]) if older + len(data["events"])
        < data["events_total"] else None,
        "newer_next": max(0, older - 200) if older else None,
        "terminal": data["run"].get("status") in TERMINAL,
        "rerun_steps": RERUN_STEPS,
    })


@router.get("/api/runs/{run_id}", tags=["runs"])
async def run_api(run_id: str, state: StateDep, user: UserDep,
                  older: Annotated[int, Query(ge=0, le=10**9)] = 0,
                  level: Annotated[str | None, Query(max_length=10)] = None,
                  type: Annotated[str | None, Query(max_length=100,
                                                    description="event type prefix")] = None
                  ) -> JSONResponse:
    """The run page's data: run, stages, timeline, tree, series, events, artifacts, usage."""
    return as_json(await run_in_threadpool(_detail, state, run_id, older, level, type))


@router.get("/api/runs/{run_id}/events", tags=["runs"])
async def events_api(run_id: str, state: StateDep, user: UserDep,
                     older: Annotated[int, Query(ge=0, le=10**9)] = 0,
                     level: Annotated[str | None, Query(max_length=10)] = None,
                     type: Annotated[str | None, Query(max_length=100)] = None) -> JSONResponse:
    """A run's events, newest 200 (after skipping `older`), filtered by log level or type."""
    rows, total = await run_in_threadpool(run_events, state.db, run_id, older=older,
                                          level=level, type_prefix=type)
    return as_json({"events": rows, "total": total})


async def _hide(run_id: str, state, user, hidden: bool) -> JSONResponse:
    if not await run_in_threadpool(set_hidden, state.db, run_id, hidden):
        raise HTTPException(404, f"no run {run_id}")
    await run_in_threadpool(audit, state.db, user, "hide" if hidden else "unhide", run_id)
    return JSONResponse({"run_id": run_id, "hidden": hidden})


@router.post("/api/runs/{run_id}/hide", tags=["runs"])
async def hide(run_id: str, state: StateDep, user: OperatorDep) -> JSONResponse:
    """Hide a run from the lists (its data stays; `?hidden=true` lists hidden runs)."""
    return await _hide(run_id, state, user, True)


@router.post("/api/runs/{run_id}/unhide", tags=["runs"])
async def unhide(run_id: str, state: StateDep, user: OperatorDep) -> JSONResponse:
    return await _hide(run_id, state, user, False)


@router.post("/api/runs/{run_id}/retry", status_code=201, tags=["runs"])
async def retry(run_id: str, state: StateDep, user: OperatorDep) -> JSONResponse:
    """201 with the new run's id; 404 unknown run; 409 a run still in progress."""
    try:
        run = await run_in_threadpool(retry_run, state.db, run_id, user.name)
    except ActionRefused as exc:
        raise HTTPException(409, str(exc)) from None
    if run is None:
        raise HTTPException(404, f"no run {run_id}")
    await run_in_threadpool(audit, state.db, user, "retry", run_id, new_run=run["_id"])
    return JSONResponse({"run_id": run["_id"], "retry_of": run_id, "status": "QUEUED"},
                        status_code=201)
