"""Server-rendered pages: the queue overview and a run's detail."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from ..contract.catalog import label
from ..contract.lifecycle import RunStatus
from .deps import State, StateDep
from .readmodel import metric_series, node_states

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.filters["event_label"] = label
router = APIRouter()


def status_counts(state: State) -> dict[str, int]:
    counts = {s.value: 0 for s in RunStatus}
    for row in state.db.runs.aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}]):
        counts[str(row["_id"])] = row["n"]
    return counts


@router.get("/", response_class=HTMLResponse)
def index(request: Request, state: StateDep) -> HTMLResponse:
    runs = list(state.db.runs.find({}, {"steps": 0}).sort("createdAt", -1).limit(50))
    titles = {h["_id"]: h.get("title") for h in state.db.hypotheses.find(
        {"_id": {"$in": [r.get("hypothesisId") for r in runs]}}, {"title": 1})}
    return templates.TemplateResponse(request, "index.html", {
        "counts": status_counts(state), "runs": runs, "titles": titles,
        "unauthenticated": state.settings.ingest_allow_unauthenticated,
    })


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_detail(run_id: str, request: Request, state: StateDep) -> HTMLResponse:
    run = state.db.runs.find_one({"_id": run_id})
    if run is None:
        raise HTTPException(404, f"no run {run_id}")
    hypothesis = state.db.hypotheses.find_one({"_id": run.get("hypothesisId")}) or {}
    stages = list(state.db.stages.find({"runId": run_id}).sort([("index", 1), ("name", 1)]))
    events = list(state.db.events.find({"runId": run_id}).sort([("seq", 1), ("timestamp", 1)]))
    artifacts = list(state.db.artifacts.find({"runId": run_id}).sort("key", 1))
    return templates.TemplateResponse(request, "run.html", {
        "run": run, "hypothesis": hypothesis, "stages": stages, "events": events,
        "artifacts": artifacts, "series": metric_series(state.db, run_id),
        "nodes": node_states(state.db, run_id),
        "unauthenticated": state.settings.ingest_allow_unauthenticated,
    })
