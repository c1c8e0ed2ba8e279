"""`POST /api/ingest/event` and `/api/ingest/events`: CloudEvents in, stored once, projected.

Bad input never costs good input: each line of a batch is judged alone, and the answer
names the line number and reason of every refused one.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pymongo.database import Database
from starlette.concurrency import run_in_threadpool

from ..envelope import Event, InvalidEvent, parse_binary, parse_event
from ..eventlog import insert_events, mark_projected
from .deps import State, StateDep, require_ingest_auth

MAX_BODY_BYTES = 16 * 1024 * 1024
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
        db.events.update_many({"_id": {"$in": [e.id for e in stale]}}, {"$set": {"stale": True}})
    return fresh, stale


def store_and_project(state: State, events: list[Event]):
    outcome = insert_events(state.db, events)
    fresh, outcome.stale = fence_stale(state.db, outcome.stored)
    state.projector.project(fresh)
    mark_projected(state.db, outcome.stored)
    return outcome


@router.post("/event", status_code=201)
async def ingest_one(request: Request, state: StateDep) -> JSONResponse:
    body = await _body(request)
    try:
        if "ce-specversion" in request.headers:
            event = parse_binary(dict(request.headers), body)
        else:
            if _media_type(request) not in ("application/cloudevents+json", "application/json"):
                raise HTTPException(415, "use application/cloudevents+json, application/json, "
                                         "or binary mode with ce-* headers")
            try:
                obj = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InvalidEvent(f"body: not JSON ({exc})") from None
            event = parse_event(obj)
    except InvalidEvent as exc:
        return JSONResponse({"detail": str(exc)}, status_code=422)
    outcome = await run_in_threadpool(store_and_project, state, [event])
    if outcome.conflicts:
        return JSONResponse({"detail": outcome.conflicts[0]}, status_code=422)
    status = "duplicate" if outcome.duplicates else "stale" if outcome.stale else "accepted"
    return JSONResponse({"status": status, "id": event.id}, status_code=201)


def _split_batch(request: Request, body: bytes) -> list[tuple[int, Any]]:
    """(line number, decoded object or an InvalidEvent) for each event of the batch."""
    media = _media_type(request)
    if media == "application/cloudevents-batch+json":
        try:
            items = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HTTPException(422, f"body: not a JSON array ({exc})") from None
        if not isinstance(items, list):
            raise HTTPException(422, "body: a cloudevents batch must be a JSON array")
        return list(enumerate(items, start=1))
    if media not in ("application/x-ndjson", "application/jsonl", "application/json-seq", ""):
        raise HTTPException(415, "use application/x-ndjson or application/cloudevents-batch+json")
    out: list[tuple[int, Any]] = []
    for number, raw in enumerate(body.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            out.append((number, json.loads(raw)))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            out.append((number, InvalidEvent(f"not JSON ({exc})")))
    return out


@router.post("/events", status_code=202)
async def ingest_batch(request: Request, state: StateDep) -> JSONResponse:
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
    outcome = await run_in_threadpool(store_and_project, state, events)
    for index, reason in outcome.conflicts.items():
        invalid.append({"line": lines[index], "reason": reason})
    invalid.sort(key=lambda item: item["line"])
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
