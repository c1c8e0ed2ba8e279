"""What people start from the web UI besides cancel and rerun: retry a finished run, run one
of a hypothesis's ideas. Each writes a QUEUED run and its `ai.run.enqueued` event."""

from __future__ import annotations

import socket
from typing import Any

from pymongo.database import Database

from ..contract.envelope import make_event
from ..contract.lifecycle import TERMINAL
from ..queue.claims import new_run_document
from .eventlog import insert_events
from .readmodel.hypotheses import ideas_of


class ActionRefused(ValueError):
    """The run or hypothesis is not in a state that allows it (409)."""


def _enqueue(db: Database, run: dict[str, Any], by: str) -> dict[str, Any]:
    run["lastEventSeq"] = 1
    db.runs.insert_one(run)
    event = make_event("ai.run.enqueued", {"run_id": run["_id"],
                                           "hypothesis_id": run["hypothesisId"],
                                           "priority": run["priority"]},
                       source=f"controlplane://{socket.gethostname()}", seq=1)
    # The run document already says what this event would project; store it as projected.
    insert_events(db, [event], durable=True)
    return run


def retry_run(db: Database, run_id: str, by: str) -> dict[str, Any] | None:
    """A new QUEUED run of a finished run's hypothesis (and idea); the old one stays as it
    was, for the record. None: no such run; ActionRefused: it has not finished."""
    old = db.runs.find_one({"_id": run_id}, {"status": 1, "hypothesisId": 1, "priority": 1,
                                             "region": 1, "idea": 1, "ideaIndex": 1})
    if old is None:
        return None
    if old.get("status") not in TERMINAL:
        raise ActionRefused(f"run {run_id} is {old.get('status')}: cancel it first")
    run = new_run_document(old["hypothesisId"], priority=old.get("priority") or 0,
                           region=old.get("region"))
    run.update({"retryOf": run_id, "createdBy": by,
                **{k: old[k] for k in ("idea", "ideaIndex") if k in old}})
    return _enqueue(db, run, by)


def run_idea(db: Database, hypothesis_id: str, index: int, by: str, priority: int = 0,
             region: str | None = None) -> dict[str, Any] | None:
    """Queue a run of the hypothesis's idea number `index` (0-based); the run carries the
    idea, so the worker runs that one. None: no such hypothesis; ActionRefused: no such idea."""
    doc = db.hypotheses.find_one({"_id": hypothesis_id})
    if doc is None:
        return None
    ideas = ideas_of(doc)
    if not 0 <= index < len(ideas):
        raise ActionRefused(f"hypothesis {hypothesis_id} has {len(ideas)} idea(s), "
                            f"no idea #{index + 1}")
    run = new_run_document(hypothesis_id, priority=priority, region=region)
    run.update({"idea": ideas[index], "ideaIndex": index, "createdBy": by})
    return _enqueue(db, run, by)
