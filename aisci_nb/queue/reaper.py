"""The reaper: takes back documents whose lease expired (their worker crashed, froze or lost
its network) and re-queues them with backoff, or fails them with LEASE_LOST.

Every worker runs one, and the control plane may too: each take-back is a write conditioned
on the epoch and the expiry that the sweep read, so concurrent reapers cannot both act on one
run, and a worker that renews in time keeps its run. What happened to a run is written to
its event log (see `queue_log`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from pymongo.database import Database
from pymongo.errors import PyMongoError

from . import claims
from .queue_log import log_hand_back

log = logging.getLogger("aisci.reaper")


def sweep(db: Database, kinds: Sequence[claims.QueueKind], policy: claims.RetryPolicy,
          source: str) -> list[claims.HandBack]:
    """One pass over the expired leases of `kinds`; what this reaper took back."""
    taken: list[claims.HandBack] = []
    for kind in kinds:
        for doc in claims.expired(db, kind):
            done = claims.reap(db, kind, doc, policy)
            if done is None:
                continue  # renewed in time, or another reaper was first
            taken.append(done)
            log.warning("%s %s: lease of %s expired; now %s (attempt %s)", kind.name,
                        doc["_id"], doc.get("claimedBy"), done.status, done.attempt)
            if kind is claims.RUNS:
                reason = (f"lease of {doc.get('claimedBy')} expired"
                          f" (attempt {doc.get('attempt')} of {policy.max_attempts})")
                by = (doc.get("cancelRequested") or {}).get("by")
                log_hand_back(db, doc["_id"], done, source=source, reason=reason, by=by)
    return taken


class Reaper:
    """A daemon thread sweeping every `interval_s`."""

    def __init__(self, db: Database, kinds: Sequence[claims.QueueKind],
                 policy: claims.RetryPolicy, *, interval_s: float, source: str) -> None:
        self.db = db
        self.kinds = tuple(kinds)
        self.policy = policy
        self.interval_s = interval_s
        self.source = source
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aisci-reaper", daemon=True)

    def start(self) -> Reaper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sweep(self.db, self.kinds, self.policy, self.source)
            except PyMongoError as exc:
                log.warning("reaper sweep failed (will retry): %s", exc)
            except Exception:
                log.exception("reaper sweep")
            self._stop.wait(self.interval_s)
