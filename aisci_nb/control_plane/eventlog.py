"""The event log in MongoDB: store each event once, atomically, and never lose a projection.

Insert first: the unique `_id` (the event id) makes a duplicate a duplicate-key error, not a
read-then-write race. Every stored event carries the id of its batch, and a batch is marked
done in `ingest_batches` only after its projection ran. A retry of events whose batch is not
done (the projection failed, or the control plane died before answering) projects them again
— projection is idempotent — instead of dropping them as already seen.

Durability is paid once per request: events and projection are written with `w=1`, and the
done marker with the default majority write concern, which waits for the journal. The
journal is ordered, so once it holds the marker it holds everything written before it, and
only then is the sender answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pymongo import WriteConcern
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError
from ulid import ULID

from ..contract.envelope import Event
from ..db import utcnow

DUPLICATE_KEY = 11000


@dataclass
class InsertOutcome:
    batch_id: str = ""
    inserted: int = 0  # new events, stored under `batch_id`
    stored: list[Event] = field(default_factory=list)  # new, or stored but never projected
    duplicates: list[int] = field(default_factory=list)  # positions in the input
    conflicts: dict[int, str] = field(default_factory=dict)  # position -> reason
    stale: list[Event] = field(default_factory=list)  # stored, not projected: an old lease epoch


def fast(db: Database, name: str) -> Collection:
    """A collection whose writes are acknowledged before they are journaled."""
    return db.get_collection(name, write_concern=WriteConcern(w=1))


def event_document(event: Event, batch_id: str | None = None) -> dict:
    doc = {
        "_id": event.id,
        "source": event.source,
        "type": event.type,
        "subject": event.subject,
        "runId": event.run_id,
        "hypothesisId": event.data.get("hypothesis_id"),
        "data": event.data,
        "seq": event.seq,
        "timestamp": event.time,
        "receivedAt": utcnow(),
        "traceparent": event.traceparent,
        "leaseEpoch": event.epoch,
        "batch": batch_id,
    }
    if event.type == "ai.run.log":
        doc["level"] = event.data.get("level")
        doc["message"] = event.data.get("message")
    return doc


def insert_events(db: Database, events: list[Event]) -> InsertOutcome:
    """Store the events; report which were duplicates (same source + id) or conflicts."""
    outcome = InsertOutcome(batch_id=str(ULID()))
    if not events:
        return outcome
    failed: set[int] = set()
    try:
        fast(db, "events").insert_many([event_document(e, outcome.batch_id) for e in events],
                                       ordered=False)
    except BulkWriteError as exc:
        for err in exc.details.get("writeErrors", []):
            if err.get("code") != DUPLICATE_KEY:
                raise
            failed.add(err["index"])
    if failed:
        _sort_out_duplicates(db, events, failed, outcome)
    outcome.stored.extend(e for i, e in enumerate(events) if i not in failed)
    outcome.inserted = len(events) - len(failed)
    return outcome


def _sort_out_duplicates(db: Database, events: list[Event], failed: set[int],
                         outcome: InsertOutcome) -> None:
    existing = {d["_id"]: d for d in db.events.find(
        {"_id": {"$in": [events[i].id for i in failed]}}, {"source": 1, "batch": 1})}
    batches = {d.get("batch") for d in existing.values()} - {None}
    done = {b["_id"] for b in db.ingest_batches.find({"_id": {"$in": list(batches)}},
                                                     {"_id": 1})}
    seen = {e.id for i, e in enumerate(events) if i not in failed}
    for i in sorted(failed):
        doc = existing.get(events[i].id)
        if doc is not None and doc["source"] != events[i].source:
            outcome.conflicts[i] = f"id {events[i].id!r} is already used by another source"
            continue
        outcome.duplicates.append(i)
        if doc is not None and doc.get("batch") not in done and events[i].id not in seen:
            seen.add(events[i].id)
            outcome.stored.append(events[i])  # stored earlier, its projection never finished


def finish_batch(db: Database, outcome: InsertOutcome) -> None:
    """The batch is projected: mark it done, durably (see the module's docstring).

    Events re-projected for an earlier batch leave that batch unmarked: it may hold events
    this request never saw, so a later duplicate of them is simply projected once more.
    """
    if outcome.inserted:
        db.ingest_batches.insert_one({"_id": outcome.batch_id, "doneAt": utcnow()})
