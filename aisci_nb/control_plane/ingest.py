"""`POST /api/ingest/event` and `/api/ingest/events`: CloudEvents in, stored once, projected.

Bad input never costs good input: each line of a batch is judged alone, and the answer
names the line number and reason of every refused one, the fields kept but not used
(`warnings`) and the events stored whose projection failed (`projection_errors`). Bad
input is a 4xx, never a 5xx; a database that cannot be reached is a 503, which senders
retry. The body is limited while it streams, before any authentication work
(`bodylimit.py`), and everything after reading it runs off the event loop.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, ServerSelectionTimeoutError
from starlette.concurrency import run_in_threadpool

from ..contract import cesdk
from ..contract.envelope import Event, InvalidEvent, has_key_hazard, parse_event
from .bodylimit import MAX_BODY_BYTES, MAX_EVENT_BYTES
from .deps import IngestPrincipal, State, StateDep, require_ingest_auth
from .eventlog import InsertOutcome, insert_events, mark_projection_error
from .scope import refusals

STRUCTURED = ("application/cloudevents+json", "application/json")
NDJSON = ("application/x-ndjson", "application/jsonl", "application/json-seq", "")
BATCH = "application/cloudevents-batch+json"
router = APIRouter(prefix="/api/ingest", dependencies=[Depends(require_ingest_auth)])
__all__ = ["MAX_BODY_BYTES", "MAX_EVENT_BYTES", "router", "store_and_project"]


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _decode(raw: bytes) -> Any:
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event larger than {MAX_EVENT_BYTES} bytes")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not JSON ({exc})") from None


def stale_positions(db: Database, events: list[Event]) -> set[int]:
    """Positions of events stamped with a lease epoch older than their run's `leaseEpoch`.

    Such an event comes from a worker whose lease was taken over: it is stored (flagged
    `stale`) for the record but must not move the read model. One query, and only when
    some event carries an epoch.
    """
    stamped = {e.run_id for e in events if e.epoch is not None and e.run_id}
    if not stamped:
        return set()
    current = {d["_id"]: d.get("leaseEpoch") or 0
               for d in db.runs.find({"_id": {"$in": list(stamped)}}, {"leaseEpoch": 1})}
    return {i for i, e in enumerate(events)
            if e.epoch is not None and e.epoch < current.get(e.run_id or "", 0)}


def store_and_project(state: State, events: list[Event]) -> InsertOutcome:
    """Store, then project what is fresh; a failed projection is isolated to its event."""
    stale = stale_positions(state.db, events)
    # With nothing to project no later write waits for the journal: this one must.
    outcome = insert_events(state.db, events, stale, durable=len(stale) == len(events))
    failed = state.projector.project(outcome.stored)
    if failed:
        position = {id(e): i for i, e in enumerate(events)}
        for index, reason in failed.items():
            event = outcome.stored[index]
            mark_projection_error(state.db, event, reason)
            outcome.projection_errors[position[id(event)]] = reason
        state.metrics.projection_errors.inc(len(failed))
    return outcome


def _store(state: State, events: list[Event]) -> InsertOutcome:
    try:
        outcome = store_and_project(state, events)
    except (ConnectionFailure, ServerSelectionTimeoutError) as exc:
        raise HTTPException(503, f"database unavailable, retry later ({type(exc).__name__})",
                            headers={"Retry-After": "5"}) from None
    m = state.metrics
    dup = set(outcome.duplicates) | set(outcome.unstorable)
    for event_type, n in Counter(e.type for i, e in enumerate(events) if i not in dup).items():
        m.events.labels(event_type).inc(n)
    m.duplicates.inc(len(outcome.duplicates))
    return outcome


def _principal(request: Request) -> IngestPrincipal:
    return getattr(request.state, "ingest_principal", IngestPrincipal("anonymous"))


def _warnings(lines: list[int], events: list[Event]) -> list[dict[str, Any]]:
    return [{"line": line, "field": f, "reason": r}
            for line, e in zip(lines, events, strict=True) for f, r in e.warnings]


def _one(state: State, principal: IngestPrincipal, headers: dict[str, str], media: str,
         body: bytes) -> JSONResponse:
    try:
        if "ce-specversion" in headers:
            if len(body) > MAX_EVENT_BYTES:
                raise HTTPException(413, f"event larger than {MAX_EVENT_BYTES} bytes")
            event = cesdk.parse_binary(headers, body)
        elif media in STRUCTURED:
            if len(body) > MAX_EVENT_BYTES:
                raise HTTPException(413, f"event larger than {MAX_EVENT_BYTES} bytes")
            event = cesdk.parse_structured(body)
        else:
            raise HTTPException(415, "use application/cloudevents+json, application/json, "
                                     "or binary mode with ce-* headers")
    except InvalidEvent as exc:
        state.metrics.invalid.inc()
        return JSONResponse({"detail": str(exc)}, status_code=422)
    refused = refusals(state.db, principal, [event])
    if refused:
        state.metrics.invalid.inc()
        return JSONResponse({"detail": refused[0]}, status_code=403)
    outcome = _store(state, [event])
    if outcome.unstorable:
        state.metrics.invalid.inc()
        return JSONResponse({"detail": outcome.unstorable[0]}, status_code=422)
    status = "duplicate" if outcome.duplicates else "stale" if outcome.stale else "accepted"
    reply: dict[str, Any] = {"status": status, "id": event.id}
    if event.warnings:
        reply["warnings"] = _warnings([1], [event])
    if outcome.projection_errors:
        reply["projection_error"] = outcome.projection_errors[0]
    return JSONResponse(reply, status_code=201)


@router.post("/event", status_code=201)
async def ingest_one(request: Request, state: StateDep) -> JSONResponse:
    started = time.perf_counter()
    body = await request.body()  # bounded by the body limit
    response = await run_in_threadpool(_one, state, _principal(request), dict(request.headers),
                                       _media_type(request), body)
    state.metrics.latency.labels("event").observe(time.perf_counter() - started)
    return response


def split_batch(media: str, body: bytes) -> list[tuple[int, Event | InvalidEvent]]:
    """(line number, parsed event or the reason it is refused) for each event of a batch."""
    out: list[tuple[int, Event | InvalidEvent]] = []
    if media == BATCH:
        try:
            items = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HTTPException(422, f"body: not a JSON array ({exc})") from None
        if not isinstance(items, list):
            raise HTTPException(422, "body: a cloudevents batch must be a JSON array")
        for number, item in enumerate(items, start=1):
            try:
                out.append((number, cesdk.parse_batch_item(item, MAX_EVENT_BYTES)))
            except InvalidEvent as exc:
                out.append((number, exc))
        return out
    if media not in NDJSON:
        raise HTTPException(415, f"use application/x-ndjson or {BATCH}")
    # One search of the whole body instead of one per line (see `plain_json`).
    searched = not has_key_hazard(body)
    for number, raw in enumerate(body.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            out.append((number, parse_event(_decode(raw), raw, searched=searched)))
        except InvalidEvent as exc:
            out.append((number, exc))
    return out


def ingest_batch_sync(state: State, media: str, body: bytes,
                      principal: IngestPrincipal | None = None) -> dict[str, Any]:
    """Parse, store and project one batch: the whole request's work, in one thread."""
    invalid: list[dict[str, Any]] = []
    events: list[Event] = []
    lines: list[int] = []
    for number, parsed in split_batch(media, body):
        if isinstance(parsed, InvalidEvent):
            invalid.append({"line": number, "reason": str(parsed)})
        else:
            events.append(parsed)
            lines.append(number)
    refused = refusals(state.db, principal or IngestPrincipal("anonymous"), events)
    if refused:  # out of scope for the sender's credential (another run, a person's move)
        invalid += [{"line": lines[i], "reason": reason} for i, reason in refused.items()]
        events = [e for i, e in enumerate(events) if i not in refused]
        lines = [n for i, n in enumerate(lines) if i not in refused]
    outcome = _store(state, events)
    if outcome.unstorable:
        invalid += [{"line": lines[i], "reason": r} for i, r in outcome.unstorable.items()]
    invalid.sort(key=lambda item: item["line"])
    state.metrics.invalid.inc(len(invalid))
    return {
        "accepted": len(events) - len(outcome.duplicates) - len(outcome.unstorable),
        "duplicate": len(outcome.duplicates),
        "invalid": len(invalid),
        "stale": len(outcome.stale),
        "invalid_lines": invalid,
        "warnings": _warnings(lines, events),
        "projection_errors": [{"line": lines[i], "reason": r}
                              for i, r in sorted(outcome.projection_errors.items())],
    }


@router.post("/events", status_code=202)
async def ingest_batch(request: Request, state: StateDep) -> JSONResponse:
    started = time.perf_counter()
    body = await request.body()  # bounded by the body limit
    reply = await run_in_threadpool(ingest_batch_sync, state, _media_type(request), body,
                                    _principal(request))
    state.metrics.latency.labels("events").observe(time.perf_counter() - started)
    return JSONResponse(reply, status_code=202)
