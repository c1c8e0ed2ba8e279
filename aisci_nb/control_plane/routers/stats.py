"""`/metrics`: the statistics page for people (a browser asking for HTML), Prometheus'
exposition for scrapers (its own token or a person's API token); twin `GET /api/stats`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from ..auth import UserDep, current_user, metrics_allowed, wants_html
from ..deps import State, StateDep, get_state
from ..pages import templates
from ..readmodel.stats import stats as read_stats
from .common import as_json

router = APIRouter()


def ingest_counters(state: State) -> dict[str, float]:
    """This process's ingest counters (since it started)."""
    reg = state.metrics.registry
    accepted = sum(s.value for m in state.metrics.events.collect() for s in m.samples
                   if s.name.endswith("_total"))
    return {"accepted": accepted,
            "invalid": reg.get_sample_value("aisci_ingest_invalid_events_total") or 0.0,
            "duplicates": reg.get_sample_value("aisci_ingest_duplicate_events_total") or 0.0}


def _stats(state: State) -> dict:
    return read_stats(state.db, ingest_counters(state))


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    state = get_state(request)
    if wants_html(request):  # a browser (Prometheus never asks for HTML)
        await current_user(request, state)  # a page: sign-in required (redirects to /login)
        data = await run_in_threadpool(_stats, state)
        return templates.TemplateResponse(request, "stats.html", {"s": data})
    if not await run_in_threadpool(metrics_allowed, request, state):
        return JSONResponse({"detail": "send Authorization: Bearer <METRICS_TOKEN>"},
                            status_code=401, headers={"WWW-Authenticate": "Bearer"})
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/stats", tags=["pages"])
async def stats_api(state: StateDep, user: UserDep) -> JSONResponse:
    """Events per second, ingest error rate, queue depth, pickup latency, runs per status
    per day, LLM tokens and cost per day and per model, GPU hours."""
    return as_json(await run_in_threadpool(_stats, state))
