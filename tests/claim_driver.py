"""A worker process for the claim test: the real Worker with no step notebooks.

Prints `run_id attempt epoch` for each claim it processed, then exits when the queue is
empty. A run of priority 1 fails its first attempt with a retryable error (through the
worker's own failure path), so it is re-queued and claimed a second time.
"""

from __future__ import annotations

import sys

from aisci_nb.contract.failures import Failure
from aisci_nb.db import connect
from aisci_nb.settings import load_settings
from aisci_nb.storage.store import open_store
from aisci_nb.worker.loop import RunSession, Worker


class RecordingWorker(Worker):
    def _carry(self, session: RunSession) -> str:
        claim = session.claim
        print(claim.run_id, claim.run["attempt"], claim.epoch, flush=True)
        if claim.run.get("priority") == 1 and claim.run["attempt"] == 1:
            return self._fail(session, Failure("TIMEOUT", "a retryable failure", None, "Stage_1"))
        return super()._carry(session)


if __name__ == "__main__":
    settings = load_settings()
    worker = RecordingWorker(settings, connect(settings), open_store(settings), steps=())
    worker.run_forever(exit_when_idle=True)
    sys.exit(0)
