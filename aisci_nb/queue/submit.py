"""Submitting work: a hypothesis and, in the same transaction, its first QUEUED run or its
QUEUED ideation request."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from pymongo.database import Database

from ..contract.envelope import make_event
from ..control_plane.eventlog import insert_events
from ..db import new_id, utcnow
from .claims import new_ideation_request, new_run_document

MAX_REFLECTIONS = 20
MAX_IDEAS = 20


@dataclass(frozen=True)
class Submitted:
    hypothesis_id: str
    run_id: str | None = None
    request_id: str | None = None  # the ideation request, when ideation comes first


def _hypothesis(title: str, idea_text: str, idea: dict | None, created_by: str,
                topic: str | None) -> dict[str, Any]:
    now = utcnow()
    doc: dict[str, Any] = {"_id": new_id(), "title": title, "idea": idea_text,
                           "ideaJson": idea, "createdBy": created_by, "createdAt": now,
                           "updatedAt": now}
    if topic:
        doc["topic"] = topic
    return doc


def log_enqueued(db: Database, run: dict[str, Any], source: str) -> None:
    """`ai.run.enqueued` for a run just inserted (sequence 1), stored as projected: the run
    document already says what it would project."""
    event = make_event(
        "ai.run.enqueued",
        {"run_id": run["_id"], "hypothesis_id": run["hypothesisId"],
         "priority": run["priority"]},
        source=source, seq=1,
    )
    insert_events(db, [event], durable=True)


def submit_hypothesis(
    db: Database, *, title: str, idea: dict, priority: int = 0, created_by: str = "cli",
    region: str | None = None,
) -> Submitted:
    """Insert the hypothesis and a QUEUED run in one transaction, and log `ai.run.enqueued`."""
    hypothesis = _hypothesis(title, idea.get("Short Hypothesis") or title, idea, created_by,
                             None)
    run = new_run_document(hypothesis["_id"], priority=priority, region=region)
    run["lastEventSeq"] = 1
    with db.client.start_session() as session:
        session.with_transaction(lambda s: (
            db.hypotheses.insert_one(hypothesis, session=s),
            db.runs.insert_one(run, session=s),
        ))
    log_enqueued(db, run, f"cli://{socket.gethostname()}")
    return Submitted(hypothesis["_id"], run_id=run["_id"])


def submit_for_ideation(
    db: Database, *, title: str, idea_text: str, topic: str | None = None,
    idea: dict | None = None, reflections: int = 3, num_ideas: int = 1,
    auto_run: bool = False, priority: int = 0, created_by: str = "cli",
    region: str | None = None,
) -> Submitted:
    """Insert the hypothesis (`ideation.status` QUEUED) and its ideation request in one
    transaction. With `auto_run`, the first idea's run is queued when ideation completes."""
    if not 1 <= reflections <= MAX_REFLECTIONS:
        raise ValueError(f"reflections: between 1 and {MAX_REFLECTIONS}")
    if not 1 <= num_ideas <= MAX_IDEAS:
        raise ValueError(f"ideas: between 1 and {MAX_IDEAS}")
    if not title.strip() or not idea_text.strip():
        raise ValueError("a title and the idea's text are needed")
    hypothesis = _hypothesis(title, idea_text, idea, created_by, topic)
    request = new_ideation_request(hypothesis["_id"], reflections=reflections,
                                   max_num_generations=num_ideas, priority=priority,
                                   region=region, auto_run=auto_run)
    hypothesis["ideation"] = {
        "requestId": request["_id"], "status": "QUEUED", "reflections": reflections,
        "numIdeas": num_ideas, "autoRun": auto_run, "queuedAt": request["createdAt"],
        "ideas": []}
    with db.client.start_session() as session:
        session.with_transaction(lambda s: (
            db.hypotheses.insert_one(hypothesis, session=s),
            db.ideation_requests.insert_one(request, session=s),
        ))
    return Submitted(hypothesis["_id"], request_id=request["_id"])
