"""Canceling a run, for the control plane's `POST /api/runs/{id}/cancel` and `aisci cancel`.

A run that no worker holds is canceled at once; a held one is flagged, and its worker
notices within seconds, stops the kernel, uploads the partial notebook and ends it CANCELED.
"""

from __future__ import annotations

from pymongo.database import Database

from . import claims
from .queue_log import log_hand_back


def cancel_run(db: Database, run_id: str, *, by: str | None, reason: str | None,
               source: str) -> claims.CancelOutcome:
    outcome = claims.request_cancel(db, run_id, by, reason)
    if outcome.hand_back is not None:
        log_hand_back(db, run_id, outcome.hand_back, source=source,
                      reason=reason or "canceled", by=by)
    return outcome
