"""Waiting for work: an idle worker sleeps on a change stream and claims the moment a
document is queued (inserted, re-queued, released), or polls where MongoDB has no change
streams (not a replica set), saying so once.

The stream is opened before each claim attempt, so an insert that lands between a failed
claim and the wait still wakes the worker. Runs waiting out a retry delay (`visibleAt`) set
a timer instead: no event announces that their delay is over.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pymongo.database import Database
from pymongo.errors import PyMongoError

from ..db import utcnow
from . import claims

log = logging.getLogger("aisci.pickup")

_QUEUED = {"$match": {"$or": [
    {"operationType": {"$in": ["insert", "replace"]}, "fullDocument.status": "QUEUED"},
    {"operationType": "update", "updateDescription.updatedFields.status": "QUEUED"},
]}}


def has_change_streams(db: Database) -> bool:
    """Change streams need a replica set (or a sharded cluster)."""
    hello = db.client.admin.command("hello")
    return bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"


class Pickup:
    def __init__(self, db: Database, kinds: Sequence[claims.QueueKind], *,
                 poll_interval_s: float, use_change_streams: bool,
                 stopping: threading.Event) -> None:
        self.db = db
        self.kinds = tuple(kinds)
        self.poll_interval_s = poll_interval_s
        self.stopping = stopping
        self._streams: bool | None = None if use_change_streams else False
        self._said_polling = False

    def _use_streams(self) -> bool:
        if self._streams is None:
            self._streams = has_change_streams(self.db)
        if not self._streams and not self._said_polling:
            self._said_polling = True
            log.warning("MongoDB is not a replica set (or change streams are off): polling the "
                        "queue every %.1fs instead of waiting on a change stream",
                        self.poll_interval_s)
        return self._streams

    @contextlib.contextmanager
    def _watch(self) -> Iterator[Any]:
        if not self._use_streams():
            yield None
            return
        names = [k.collection for k in self.kinds]
        pipeline = [{"$match": {"ns.coll": {"$in": names}}}, _QUEUED]
        with self.db.watch(pipeline, max_await_time_ms=250) as stream:
            yield stream

    def _timeout(self) -> float:
        """Until the earliest delayed document turns visible, at most one poll interval."""
        wait = self.poll_interval_s
        for kind in self.kinds:
            at = claims.next_visible_at(self.db, kind)
            if at is not None:
                wait = min(wait, max(0.0, (at - utcnow()).total_seconds()))
        return wait

    def _wait(self, stream: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.stopping.is_set() and time.monotonic() < deadline:
            if stream is None:
                self.stopping.wait(min(0.25, max(0.0, deadline - time.monotonic())))
            elif stream.try_next() is not None:
                return

    def next_claim(self, claim: Callable[[], claims.Claim | None],
                   exit_when_idle: bool = False) -> claims.Claim | None:
        """Block until `claim()` returns something, or None when stopping (or idle, if asked)."""
        while not self.stopping.is_set():
            try:
                with self._watch() as stream:
                    while not self.stopping.is_set():
                        got = claim()
                        if got is not None or exit_when_idle:
                            return got
                        self._wait(stream, self._timeout())
            except PyMongoError as exc:
                log.warning("waiting for work failed (retrying in 1s): %s", exc)
                self.stopping.wait(1.0)
        return None
