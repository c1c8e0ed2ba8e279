"""The event log in MongoDB: store each event once, atomically, and never lose a projection.

An event's identity is (`source`, `id`), as CloudEvents says: the log's `_id` is the
compound `{"source": ..., "id": ...}`, so a replay is a duplicate-key error on the one index
every collection has (no second unique index to maintain on the hot path), and two sources
may use the same id. `_id.id` is the event id.

A request costs one insert and one bulk write per read-model collection it touches, and no
bookkeeping: a duplicate (a retry of a request whose answer was lost) is simply projected
again, which the projection makes harmless (it is idempotent and order-tolerant). So an
event stored by a request that died before projecting is projected by the sender's retry.

Durability is paid once per request: the events and all but the last projection write go
with `w=1`; the last one waits for the majority (the journal), and the journal is ordered,
so once it holds that write it holds everything written before it. Only then is the sender
answered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo import WriteConcern
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from ..contract.envelope import Event, InvalidEvent, check_storable
from ..db import utcnow

DUPLICATE_KEY = 11000


@dataclass
class InsertOutcome:
    inserted: int = 0  # new events
    stored: list[Event] = field(default_factory=list)  # to project: new ones and replays
    duplicates: list[int] = field(default_factory=list)  # positions in the input
    stale: list[Event] = field(default_factory=list)  # stored, not projected: an old lease epoch
    projection_errors: dict[int, str] = field(default_factory=dict)  # position -> reason
    unstorable: dict[int, str] = field(default_factory=dict)  # position -> reason: not stored


def fast(db: Database, name: str) -> Collection:
    """A collection whose writes are acknowledged before they are journaled."""
    return db.get_collection(name, write_concern=WriteConcern(w=1))


def event_key(event: Event) -> dict[str, str]:
    """The log's `_id` of an event: its CloudEvents identity, in this field order."""
    return {"source": event.source, "id": event.id}


def event_document(event: Event, stale: bool = False, received: datetime | None = None
                   ) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": {"source": event.source, "id": event.id},
        "source": event.source,
        "type": event.type,
        "subject": event.subject,
        "runId": event.run_id,
        "hypothesisId": event.data.get("hypothesis_id"),
        "data": event.data,
        "seq": event.seq,
        "timestamp": event.time,
        "receivedAt": received or utcnow(),
        "traceparent": event.traceparent,
        "leaseEpoch": event.epoch,
    }
    if event.warnings:
        doc["warnings"] = [{"field": f, "reason": r} for f, r in event.warnings]
        doc["dataAsSent"] = event.sent_data
    if stale:
        doc["stale"] = True
    if event.type == "ai.run.log":
        doc["level"] = event.data.get("level")
        doc["message"] = event.data.get("message")
    return doc


def insert_events(db: Database, events: list[Event], stale: Iterable[int] = (), *,
                  durable: bool = False) -> InsertOutcome:
    """Store the events (one round trip); report which were already stored (replays).

    `stale` are positions of events whose lease epoch is old: stored flagged, not projected.
    `durable` waits for the journal: for events no projection write follows (the queue's
    own records of what it did).
    """
    outcome = InsertOutcome()
    if not events:
        return outcome
    old = set(stale)
    now = utcnow()
    coll = db.events if durable else fast(db, "events")
    docs = [event_document(e, i in old, now) for i, e in enumerate(events)]
    try:
        failed = _insert(coll, docs, range(len(docs)))
    except OverflowError:  # an integer beyond 64 bits somewhere: find it, store the rest
        for i, e in enumerate(events):
            try:
                check_storable(e.data)
            except InvalidEvent as exc:
                outcome.unstorable[i] = str(exc)
        failed = _insert(coll, docs, [i for i in range(len(docs))
                                      if i not in outcome.unstorable])
    outcome.duplicates = sorted(failed)
    outcome.inserted = len(events) - len(failed) - len(outcome.unstorable)
    seen: set[tuple[str, str]] = set()
    for i, e in enumerate(events):
        if (e.source, e.id) in seen or i in outcome.unstorable:
            continue  # the same event twice in one request: projected once
        seen.add((e.source, e.id))
        (outcome.stale if i in old else outcome.stored).append(e)
    return outcome


def _insert(coll: Collection, docs: list[dict[str, Any]], positions: Iterable[int]
            ) -> set[int]:
    """Insert the documents at `positions`; returns the positions that were duplicates."""
    positions = list(positions)
    if not positions:
        return set()
    try:
        coll.insert_many([docs[i] for i in positions], ordered=False)
    except BulkWriteError as exc:
        failed = set()
        for err in exc.details.get("writeErrors", []):
            if err.get("code") != DUPLICATE_KEY:
                raise
            failed.add(positions[err["index"]])
        return failed
    return set()


def mark_projection_error(db: Database, event: Event, reason: str) -> None:
    """Flag a stored event whose projection failed, so an operator can find and replay it."""
    fast(db, "events").update_one({"_id": event_key(event)}, {"$set": {
        "projectionError": reason[:500], "projectionFailedAt": utcnow()}})


def migrate_event_ids(db: Database, batch: int = 1000) -> int:
    """Move events stored under the old `_id` (the id alone) to the (source, id) key.

    Idempotent and resumable (each event is inserted under its new key before the old
    document goes); run at the control plane's start. Returns how many were moved.
    """
    moved = 0
    while True:
        docs = list(db.events.find({"_id": {"$type": "string"}}).limit(batch))
        if not docs:
            return moved
        new = [{**d, "_id": {"source": d.get("source", ""), "id": d["_id"]}} for d in docs]
        try:
            db.events.insert_many(new, ordered=False)
        except BulkWriteError as exc:
            if any(e.get("code") != DUPLICATE_KEY for e in exc.details["writeErrors"]):
                raise
        db.events.delete_many({"_id": {"$in": [d["_id"] for d in docs]}})
        moved += len(docs)
