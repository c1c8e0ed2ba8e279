"""A worker process for the claim test: the real Worker with no step notebooks.

Prints each run id it processed, one per line, then exits when the queue is empty.
"""

from __future__ import annotations

import sys

from aisci_nb.db import connect
from aisci_nb.queue import Claim
from aisci_nb.settings import load_settings
from aisci_nb.store import open_store
from aisci_nb.worker import Worker


class RecordingWorker(Worker):
    def process(self, claim: Claim):
        status = super().process(claim)
        print(claim.run_id, flush=True)
        return status


if __name__ == "__main__":
    settings = load_settings()
    worker = RecordingWorker(settings, connect(settings), open_store(settings), steps=())
    worker.run_forever(exit_when_idle=True)
    sys.exit(0)
