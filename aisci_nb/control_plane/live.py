"""Live pages: one MongoDB change stream per process, fanned out to every open page.

A thread watches `events` inserts (a change stream; when the server cannot give one, e.g. a
standalone mongod, it polls `receivedAt` instead) and hands each event, trimmed to what a
page shows, to the asyncio queues of the subscribed pages. Ten open tabs cost ten queues,
not ten streams. A page that falls behind loses its oldest messages, never blocks the rest.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pymongo.database import Database
from pymongo.errors import OperationFailure, PyMongoError

from ..db import utcnow

log = logging.getLogger("aisci.control_plane.live")
QUEUE_MAX = 1000
POLL_S = 0.2
MESSAGE_CHARS = 500


def message(doc: dict[str, Any]) -> dict[str, Any]:
    """What a page needs of an event: small, JSON-ready."""
    data = doc.get("data") or {}
    text = doc.get("message") or data.get("message")
    brief = {k: v for k, v in data.items() if isinstance(v, str | int | float | bool)
             and k not in ("run_id", "message")}
    ts = doc.get("timestamp")
    return {"id": str(doc.get("_id")), "runId": doc.get("runId"), "type": doc.get("type"),
            "seq": doc.get("seq"), "level": doc.get("level"),
            "time": ts.isoformat() if hasattr(ts, "isoformat") else ts,
            "hypothesisId": doc.get("hypothesisId") or data.get("hypothesis_id"),
            "message": str(text)[:MESSAGE_CHARS] if text is not None else None,
            "data": {k: (v[:MESSAGE_CHARS] if isinstance(v, str) else v)
                     for k, v in list(brief.items())[:20]}}


@dataclass(eq=False)
class Subscriber:
    loop: asyncio.AbstractEventLoop
    run_id: str | None  # None: every event (the overview, the lists)
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))

    def offer(self, msg: dict[str, Any]) -> None:
        if self.queue.full():
            self.queue.get_nowait()  # drop the oldest: a slow page never blocks the others
        self.queue.put_nowait(msg)


class Broadcaster:
    """The process's single watcher of new events, started with the first subscriber."""

    def __init__(self, db: Database, poll_s: float = POLL_S) -> None:
        self.db = db
        self.poll_s = poll_s
        self.mode = "idle"  # "change-stream" or "polling" once started
        self._subs: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def subscribe(self, run_id: str | None) -> Subscriber:
        sub = Subscriber(asyncio.get_running_loop(), run_id)
        with self._lock:
            self._subs.add(sub)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="aisci-live",
                                                daemon=True)
                self._thread.start()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def close(self) -> None:
        self._stop.set()

    def publish(self, doc: dict[str, Any]) -> None:
        msg = message(doc)
        with self._lock:
            subs = [s for s in self._subs if s.run_id is None or s.run_id == msg["runId"]]
        for s in subs:
            try:
                s.loop.call_soon_threadsafe(s.offer, msg)
            except RuntimeError:  # its loop is closed: the page went away
                self.unsubscribe(s)

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self._stream()
            except OperationFailure as exc:
                log.info("no change streams here (%s): polling every %ss", exc, self.poll_s)
                self._poll()
            except PyMongoError as exc:
                log.warning("live event stream interrupted: %s; reconnecting", exc)
                time.sleep(1)

    def _stream(self) -> None:
        pipeline = [{"$match": {"operationType": "insert"}},
                    {"$project": {"fullDocument.batch": 0}}]
        with self.db.events.watch(pipeline, max_await_time_ms=250) as stream:
            self.mode = "change-stream"
            while not self._stop.is_set() and stream.alive:
                change = stream.try_next()
                if change is not None:
                    self.publish(change["fullDocument"])

    def _poll(self) -> None:
        self.mode = "polling"
        since = utcnow() - timedelta(seconds=1)
        seen: set[str] = set()
        while not self._stop.is_set():
            rows = list(self.db.events.find({"receivedAt": {"$gte": since}}, {"batch": 0})
                        .sort("receivedAt", 1).limit(1000))
            fresh = [r for r in rows if str(r["_id"]) not in seen]
            for r in fresh:
                self.publish(r)
            if rows:
                newest = rows[-1]["receivedAt"]
                seen = {str(r["_id"]) for r in rows if r["receivedAt"] == newest}
                since = newest
            time.sleep(self.poll_s)
