"""Server-rendered pages: the queue overview and a run's detail, for signed-in people.

A run page is bounded whatever the run did: the newest `EVENTS_PER_PAGE` events with a
link to older ones, each event's data cut at `EVENT_DATA_CHARS`, and capped metric series,
search nodes and artifacts; a missing field renders empty, never as an error.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from ..contract.catalog import label
from ..contract.lifecycle import RunStatus
from .auth import UserDep
from .deps import State, StateDep
from .readmodel import metric_series, node_states

EVENTS_PER_PAGE = 200
EVENT_DATA_CHARS = 2000
SERIES_POINTS = 2000
NODES_MAX = 500
ARTIFACTS_MAX = 500


def auth_context(request: Request) -> dict[str, Any]:
    """The signed-in user and the session's CSRF token, for the nav and every form."""
    return {"user": getattr(request.state, "user", None),
            "csrf_token": getattr(request.state, "csrf", None)}


def num(value: Any, spec: str = "%.4g") -> str:
    """A number formatted, or empty for anything else (a missing metric is not an error)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return spec % value


def short_json(value: Any, limit: int = EVENT_DATA_CHARS) -> str:
    try:
        text = orjson.dumps(value, default=str).decode()
    except TypeError:
        text = str(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def hhmmss(value: Any) -> str:
    return value.strftime("%H:%M:%S.%f")[:-3] if hasattr(value, "strftime") else ""


templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"),
                            context_processors=[auth_context])
templates.env.filters["event_label"] = label
templates.env.filters["num"] = num
templates.env.filters["short_json"] = short_json
templates.env.filters["hhmmss"] = hhmmss
router = APIRouter()


def status_counts(state: State) -> dict[str, int]:
    counts = {s.value: 0 for s in RunStatus}
    for row in state.db.runs.aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}]):
        counts[str(row["_id"])] = row["n"]
    return counts


@router.get("/", response_class=HTMLResponse)
def index(request: Request, state: StateDep, user: UserDep) -> HTMLResponse:
    runs = list(state.db.runs.find({}, {"steps": 0}).sort("createdAt", -1).limit(50))
    titles = {h["_id"]: h.get("title") for h in state.db.hypotheses.find(
        {"_id": {"$in": [r.get("hypothesisId") for r in runs]}}, {"title": 1})}
    return templates.TemplateResponse(request, "index.html", {
        "counts": status_counts(state), "runs": runs, "titles": titles,
        "unauthenticated": state.settings.ingest_allow_unauthenticated,
    })


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_detail(run_id: str, request: Request, state: StateDep, user: UserDep,
               older: Annotated[int, Query(ge=0, le=10**9)] = 0) -> HTMLResponse:
    """`older`: how many of the newest events to skip (the "older events" link)."""
    run = state.db.runs.find_one({"_id": run_id})
    if run is None:
        raise HTTPException(404, f"no run {run_id}")
    hypothesis = state.db.hypotheses.find_one({"_id": run.get("hypothesisId")}) or {}
    stages = list(state.db.stages.find({"runId": run_id}).sort([("index", 1), ("name", 1)]))
    total = state.db.events.count_documents({"runId": run_id})
    events = list(state.db.events.find({"runId": run_id})
                  .sort([("seq", -1), ("timestamp", -1)])
                  .skip(older).limit(EVENTS_PER_PAGE))[::-1]
    artifacts = list(state.db.artifacts.find({"runId": run_id}).sort("key", 1)
                     .limit(ARTIFACTS_MAX))
    return templates.TemplateResponse(request, "run.html", {
        "run": run, "hypothesis": hypothesis, "stages": stages, "events": events,
        "events_total": total, "older": older,
        "older_next": older + EVENTS_PER_PAGE if older + EVENTS_PER_PAGE < total else None,
        "newer_next": max(0, older - EVENTS_PER_PAGE) if older else None,
        "artifacts": artifacts, "series": metric_series(state.db, run_id, limit=SERIES_POINTS),
        "nodes": node_states(state.db, run_id, limit=NODES_MAX),
        "unauthenticated": state.settings.ingest_allow_unauthenticated,
    })
