"""`GET /api/live`: server-sent events for open pages, fed by the process's one watcher of
new events (`live.Broadcaster`); `?run=ID` narrows to one run."""

from __future__ import annotations

import asyncio
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from sse_starlette import EventSourceResponse

from ..auth import UserDep
from ..deps import StateDep

router = APIRouter()
PING_S = 15


@router.get("/api/live", tags=["live"], response_class=EventSourceResponse)
async def live(request: Request, state: StateDep, user: UserDep,
               run: Annotated[str | None, Query(max_length=100)] = None) -> EventSourceResponse:
    """A `text/event-stream` of new events (`event: ai.event`, data: the event, trimmed),
    all of them or one run's; a `hello` first says how the server watches."""
    broadcaster = request.app.state.live
    sub = broadcaster.subscribe(run)

    async def stream():
        try:
            yield {"event": "hello", "data": orjson.dumps({"mode": broadcaster.mode}).decode()}
            while True:
                try:
                    msg = await asyncio.wait_for(sub.queue.get(), timeout=PING_S)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    continue
                yield {"event": "ai.event", "id": msg["id"],
                       "data": orjson.dumps(msg, default=str).decode()}
        finally:
            broadcaster.unsubscribe(sub)

    return EventSourceResponse(stream(), ping=PING_S)
