"""`POST /api/ingest/event` and `/api/ingest/events`: CloudEvents in, stored once, projected.

Bad input never costs good input: each line of a batch is judged alone, and the answer
names the line number and reason of every refused one. Bad input is a 4xx, never a 5xx;
a database that cannot be reached is a 503, which senders retry.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, ServerSelectionTimeoutError
from starlette.concurrency import run_in_threadpool

from ..contract.envelope import Event, InvalidEvent, parse_binary, parse_event
from .deps import IngestPrincipal, State, StateDep, require_ingest_auth
from .eventlog import InsertOutcome, fast, finish_batch, insert_events
from .scope import refusals

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_EVENT_BYTES = 1024 * 1024
STRUCTURED = ("application/cloudevents+json", "application/json")
NDJSON = ("application/x-ndjson", "application/jsonl", "application/json-seq", "")
router = APIRouter(prefix="/api/ingest", dependencies=[Depends(require_ingest_auth)])


async def _body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise HTTPException(413, f"body over {MAX_BODY_BYTES} bytes")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise HTTPException(413, f"body over {MAX_BODY_BYTES} bytes")
    return body


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _decode(raw: bytes) -> Any:
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event larger than {MAX_EVENT_BYTES} bytes")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not JSON ({exc})") from None


def fence_stale(db: Database, events: list[Event]) -> tuple[list[Event], list[Event]]:
    """Split events into (fresh, stale); stale ones are flagged `stale` in the event log.

    An event stamped with a lease epoch (`leaseepoch`) older than its run's current
    `leaseEpoch` comes from a worker whose lease was taken over: it stays in the log for
    the record but must not move the read model. Events without an epoch are fresh.
    """
    stamped = {e.run_id for e in events if e.epoch is not None and e.run_id}
    if not stamped:
        return events, []
    current = {d["_id"]: d.get("leaseEpoch") or 0
               for d in db.runs.find({"_id": {"$in": list(stamped)}}, {"leaseEpoch": 1})}
    fresh: list[Event] = []
    stale: list[Event] = []
    for e in events:
        old = e.epoch is not None and e.epoch < current.get(e.run_id or "", 0)
        (stale if old else fresh).append(e)
    if stale:
        fast(db, "events").update_many({"_id": {"$in": [e.id for e in stale]}},
                                       {"$set": {"stale": True}})
    return fresh, stale


def store_and_project(state: State, events: list[Event]) -> InsertOutcome:
    outcome = insert_events(state.db, events)
    fresh, outcome.stale = fence_stale(state.db, outcome.stored)
    state.projector.project(fresh)
    finish_batch(state.db, outcome)
    return outcome


def _principal(request: Request) -> IngestPrincipal:
    return getattr(request.state, "ingest_principal", IngestPrincipal("anonymous"))


async def _store(state: State, events: list[Event], endpoint: str,
                 started: float) -> InsertOutcome:
    try:
        outcome = await run_in_threadpool(store_and_project, state, events)
    except (ConnectionFailure, ServerSelectionTimeoutError) as exc:
        raise HTTPException(503, f"database unavailable, retry later ({type(exc).__name__})",
                            headers={"Retry-After": "5"}) from None
    m = state.metrics
    refused = set(outcome.duplicates) | set(outcome.conflicts)
    for i, e in enumerate(events):
        if i not in refused:
            m.events.labels(e.type).inc()
    m.duplicates.inc(len(outcome.duplicates))
    m.latency.labels(endpoint).observe(time.perf_counter() - started)
    return outcome


@router.post("/event", status_code=201)
async def ingest_one(request: Request, state: StateDep) -> JSONResponse:
    started = time.perf_counter()
    body = await _body(request)
    try:
        if "ce-specversion" in request.headers:
            event = parse_binary(dict(request.headers), body)
        elif _media_type(request) in STRUCTURED:
            event = parse_event(_decode(body))
        else:
            raise HTTPException(415, "use application/cloudevents+json, application/json, "
                                     "or binary mode with ce-* headers")
    except InvalidEvent as exc:
        state.metrics.invalid.inc()
        return JSONResponse({"detail": str(exc)}, status_code=422)
    refused = await run_in_threadpool(refusals, state.db, _principal(request), [event])
    if refused:
        state.metrics.invalid.inc()
        return JSONResponse({"detail": refused[0]}, status_code=403)
    outcome = await _store(state, [event], "event", started)
    if outcome.conflicts:
        state.metrics.invalid.inc()
        return JSONResponse({"detail": outcome.conflicts[0]}, status_code=422)
    status = "duplicate" if outcome.duplicates else "stale" if outcome.stale else "accepted"
    return JSONResponse({"status": status, "id": event.id}, status_code=201)


def _split_batch(request: Request, body: bytes) -> list[tuple[int, Any]]:
    """(line number, decoded object or an InvalidEvent) for each event of the batch."""
    media = _media_type(request)
    if media == "application/cloudevents-batch+json":
        try:
            items = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HTTPException(422, f"body: not a JSON array ({exc})") from None
        if not isinstance(items, list):
            raise HTTPException(422, "body: a cloudevents batch must be a JSON array")
        return list(enumerate(items, start=1))
    if media not in NDJSON:
        raise HTTPException(415, "use application/x-ndjson or application/cloudevents-batch+json")
    out: list[tuple[int, Any]] = []
    for number, raw in enumerate(body.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            out.append((number, _decode(raw)))
        except InvalidEvent as exc:
            out.append((number, exc))
    return out


@router.post("/events", status_code=202)
async def ingest_batch(request: Request, state: StateDep) -> JSONResponse:
    started = time.perf_counter()
    body = await _body(request)
    invalid: list[dict[str, Any]] = []
    events: list[Event] = []
    lines: list[int] = []
    for number, obj in _split_batch(request, body):
        try:
            if isinstance(obj, InvalidEvent):
                raise obj
            events.append(parse_event(obj))
            lines.append(number)
        except InvalidEvent as exc:
            invalid.append({"line": number, "reason": str(exc)})
    refused = await run_in_threadpool(refusals, state.db, _principal(request), events)
    if refused:
        invalid += [{"line": lines[i], "reason": reason} for i, reason in refused.items()]
        events = [e for i, e in enumerate(events) if i not in refused]
        lines = [n for i, n in enumerate(lines) if i not in refused]
    outcome = await _store(state, events, "events", started)
    for index, reason in outcome.conflicts.items():
        invalid.append({"line": lines[index], "reason": reason})
    invalid.sort(key=lambda item: item["line"])
    state.metrics.invalid.inc(len(invalid))
    duplicates = len(outcome.duplicates)
    return JSONResponse(
        {
            "accepted": len(events) - duplicates - len(outcome.conflicts),
            "duplicate": duplicates,
            "invalid": len(invalid),
            "stale": len(outcome.stale),
            "invalid_lines": invalid,
        },
        status_code=202,
    )
