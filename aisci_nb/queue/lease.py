"""Keeping a claim alive: a thread that renews the lease and watches for takeover and cancel.

It renews every `renew_s` with a write conditioned on the lease epoch, and between renewals
looks at the document every `check_s`, so a cancel request or a lost lease is noticed within
seconds. It never raises: a MongoDB outage is logged and retried, and if the lease expired
meanwhile, the first look after the outage finds it taken over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pymongo.database import Database
from pymongo.errors import PyMongoError

from . import claims

log = logging.getLogger("aisci.lease")


class LeaseKeeper:
    def __init__(
        self, db: Database, claim: claims.Claim, *, lease_s: float, renew_s: float,
        check_s: float, on_lost: Callable[[], None], on_cancel: Callable[[dict], None],
        on_renew: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.claim = claim
        self.lease_s = lease_s
        self.renew_s = renew_s
        self.check_s = min(check_s, renew_s)
        self.on_lost = on_lost
        self.on_cancel = on_cancel
        self.on_renew = on_renew
        self.lost = threading.Event()
        self.cancel: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"aisci-lease-{claim.run_id[:8]}")

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        last_renewal = time.monotonic()
        while not self._stop.wait(self.check_s):
            due = time.monotonic() - last_renewal >= self.renew_s
            try:
                doc = (claims.renew(self.db, self.claim, self.lease_s) if due
                       else claims.peek(self.db, self.claim))
            except PyMongoError as exc:
                log.warning("lease check for %s failed (will retry): %s", self.claim.run_id, exc)
                continue
            try:
                if self._act(doc, due):
                    return
            except Exception:  # a failing callback must not end the lease
                log.exception("lease keeper of %s", self.claim.run_id)
            if due and doc is not None:
                last_renewal = time.monotonic()

    def _act(self, doc: dict[str, Any] | None, renewed: bool) -> bool:
        """React to what the check found; True when the lease is gone and the thread ends."""
        if self._stop.is_set():
            return True
        if doc is None:
            self.lost.set()
            log.warning("lease of %s epoch %s was taken over; stopping it",
                        self.claim.run_id, self.claim.epoch)
            self.on_lost()
            return True
        if renewed and self.on_renew:
            self.on_renew()
        if doc.get("cancelRequested") and self.cancel is None:
            self.cancel = doc["cancelRequested"]
            log.info("cancel requested for %s: %s", self.claim.run_id, self.cancel)
            self.on_cancel(self.cancel)
        return False
