"""MongoDB access: one client per process, the database named by the URL, the indexes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pymongo import ASCENDING, DESCENDING, IndexModel, MongoClient
from pymongo.database import Database

from .settings import Settings

INDEXES: dict[str, list[IndexModel]] = {
    "runs": [
        # The claim: the highest priority, oldest queued run first.
        IndexModel([("status", ASCENDING), ("priority", DESCENDING), ("createdAt", ASCENDING)]),
        IndexModel([("hypothesisId", ASCENDING)]),
        # The reaper: expired leases of held runs.
        IndexModel([("status", ASCENDING), ("leaseExpiresAt", ASCENDING)]),
        # An idle worker's timer: the next queued run whose retry delay ends.
        IndexModel([("status", ASCENDING), ("visibleAt", ASCENDING)]),
        # The UI: newest runs first, and what each pod holds.
        IndexModel([("createdAt", DESCENDING)]),
        IndexModel([("claimedBy", ASCENDING), ("status", ASCENDING)]),
        # The runs page's filters, each newest first (a page is read straight off an index).
        IndexModel([("status", ASCENDING), ("createdAt", DESCENDING)]),
        IndexModel([("hypothesisId", ASCENDING), ("createdAt", DESCENDING)]),
        IndexModel([("pod.id", ASCENDING), ("createdAt", DESCENDING)]),
        # Workers seen recently (the overview).
        IndexModel([("lastHeartbeat", DESCENDING)]),
    ],
    "ideation_requests": [
        IndexModel([("status", ASCENDING), ("priority", DESCENDING), ("createdAt", ASCENDING)]),
        IndexModel([("status", ASCENDING), ("leaseExpiresAt", ASCENDING)]),
        IndexModel([("status", ASCENDING), ("visibleAt", ASCENDING)]),
        IndexModel([("hypothesisId", ASCENDING)]),
    ],
    # An event's identity is (source, id): `_id` is `{"source", "id"}`, so a replay is a
    # duplicate key on the one index every collection has (`eventlog.py`).
    "events": [IndexModel([("runId", ASCENDING), ("seq", ASCENDING)]),
               IndexModel([("runId", ASCENDING), ("type", ASCENDING), ("seq", ASCENDING)]),
               # Live pages' polling fallback and the events-per-second chart.
               IndexModel([("receivedAt", ASCENDING)])],
    "stages": [IndexModel([("runId", ASCENDING), ("name", ASCENDING)], unique=True)],
    "llm_calls": [IndexModel([("runId", ASCENDING)])],
    # Signatures seen recently: a replay inside the accepted clock skew is refused.
    "ingest_signatures": [IndexModel([("at", ASCENDING)], expireAfterSeconds=900)],
    "artifacts": [IndexModel([("runId", ASCENDING), ("key", ASCENDING)], unique=True)],
    "hypotheses": [IndexModel([("createdAt", DESCENDING)])],
    "validations": [IndexModel([("runId", ASCENDING)])],
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """Document ids are UUID strings: existing dashboards validate them."""
    return str(uuid.uuid4())


def connect(settings: Settings, **kwargs: object) -> Database:
    client: MongoClient = MongoClient(settings.mongodb_url, tz_aware=True, **kwargs)
    return client[settings.db_name]


def ensure_indexes(db: Database) -> None:
    """Create the indexes the claim, the ingest and the UI need; idempotent."""
    for name, indexes in INDEXES.items():
        db[name].create_indexes(indexes)
