"""Events that tell what the queue did to a run: a reaper's take-back, a cancel, a release.

The queue's own write already put the run document in the state such an event would
project, so the event is stored in the run's log as already projected, with the sequence
number and lease epoch that the write reserved.
"""

from __future__ import annotations

from pymongo.database import Database

from ..contract.envelope import Event, make_event
from ..control_plane.eventlog import finish_batch, insert_events
from .claims import HandBack


def hand_back_event(run_id: str, done: HandBack, *, source: str, reason: str,
                    by: str | None = None) -> Event:
    if done.status == "FAILED":
        event_type, data = "ai.run.failed", {"code": "LEASE_LOST", "message": reason,
                                             "retryable": False}
    elif done.status == "CANCELED":
        event_type, data = "ai.run.canceled", {"by": by, "reason": reason}
    else:
        event_type, data = "ai.run.status_changed", {"from": done.previous, "to": done.status,
                                                     "reason": reason}
    return make_event(event_type, {"run_id": run_id, **data}, source=source, seq=done.seq,
                      epoch=done.epoch)


def log_hand_back(db: Database, run_id: str, done: HandBack, *, source: str, reason: str,
                  by: str | None = None) -> Event:
    event = hand_back_event(run_id, done, source=source, reason=reason, by=by)
    finish_batch(db, insert_events(db, [event]))
    return event
