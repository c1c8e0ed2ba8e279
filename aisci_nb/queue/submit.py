"""Submitting work: a hypothesis and its first QUEUED run, written together."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from pymongo.database import Database

from ..contract.envelope import make_event
from ..control_plane.eventlog import finish_batch, insert_events
from ..db import new_id, utcnow
from .claims import new_run_document


@dataclass(frozen=True)
class Submitted:
    hypothesis_id: str
    run_id: str


def submit_hypothesis(
    db: Database, *, title: str, idea: dict, priority: int = 0, created_by: str = "cli",
    region: str | None = None,
) -> Submitted:
    """Insert the hypothesis and a QUEUED run in one transaction, and log `ai.run.enqueued`."""
    now = utcnow()
    hypothesis = {
        "_id": new_id(), "title": title, "idea": idea.get("Short Hypothesis") or title,
        "ideaJson": idea, "createdBy": created_by, "createdAt": now, "updatedAt": now,
    }
    run = new_run_document(hypothesis["_id"], priority=priority, region=region)
    run["lastEventSeq"] = 1
    with db.client.start_session() as session:
        session.with_transaction(lambda s: (
            db.hypotheses.insert_one(hypothesis, session=s),
            db.runs.insert_one(run, session=s),
        ))
    event = make_event(
        "ai.run.enqueued",
        {"run_id": run["_id"], "hypothesis_id": hypothesis["_id"], "priority": priority},
        source=f"cli://{socket.gethostname()}", seq=1,
    )
    # The run document already says what this event would project; store it as projected.
    finish_batch(db, insert_events(db, [event]))
    return Submitted(hypothesis["_id"], run["_id"])
