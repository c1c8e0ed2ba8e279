"""The event log in MongoDB: store each event once, atomically.

Insert first: the unique `_id` (the event id) makes a duplicate a duplicate-key error, not
a read-then-write race. A stored event is marked `projected` only after the projection ran,
so a retry after a failed projection projects it again instead of being dropped as seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pymongo.database import Database
from pymongo.errors import BulkWriteError

from .db import utcnow
from .envelope import Event

DUPLICATE_KEY = 11000


@dataclass
class InsertOutcome:
    stored: list[Event] = field(default_factory=list)  # new, or stored but never projected
    duplicates: list[int] = field(default_factory=list)  # positions in the input
    conflicts: dict[int, str] = field(default_factory=dict)  # position -> reason
    stale: list[Event] = field(default_factory=list)  # stored, not projected: an old lease epoch


def event_document(event: Event) -> dict:
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
        "projected": False,
    }
    if event.type == "ai.run.log":
        doc["level"] = event.data.get("level")
        doc["message"] = event.data.get("message")
    return doc


def insert_events(db: Database, events: list[Event]) -> InsertOutcome:
    """Store the events; report which were duplicates (same source + id) or conflicts."""
    outcome = InsertOutcome()
    if not events:
        return outcome
    failed: set[int] = set()
    try:
        db.events.insert_many([event_document(e) for e in events], ordered=False)
    except BulkWriteError as exc:
        for err in exc.details.get("writeErrors", []):
            if err.get("code") != DUPLICATE_KEY:
                raise
            failed.add(err["index"])
    if failed:
        ids = [events[i].id for i in failed]
        existing = {d["_id"]: d for d in db.events.find({"_id": {"$in": ids}},
                                                         {"source": 1, "projected": 1})}
        seen = {e.id for i, e in enumerate(events) if i not in failed}
        for i in sorted(failed):
            doc = existing.get(events[i].id)
            if doc is not None and doc["source"] != events[i].source:
                outcome.conflicts[i] = f"id {events[i].id!r} is already used by another source"
                continue
            outcome.duplicates.append(i)
            if doc is not None and not doc.get("projected") and events[i].id not in seen:
                seen.add(events[i].id)
                outcome.stored.append(events[i])  # stored earlier, projection never finished
    outcome.stored.extend(e for i, e in enumerate(events) if i not in failed)
    return outcome


def mark_projected(db: Database, events: list[Event]) -> None:
    if events:
        db.events.update_many({"_id": {"$in": [e.id for e in events]}},
                              {"$set": {"projected": True}})
