"""A worker process for the claim test: the real Worker with a recording step.

Prints `run_id attempt epoch` for each claim it processed, then exits when the queue is
empty. A run of priority 1 fails its first attempt with a retryable error (through the
worker's own failure path), so it is re-queued and claimed a second time. The step is
injected (`run_step=`), so no notebook runs and no private method is overridden.
"""

from __future__ import annotations

import sys

from aisci_nb.contract.failures import Failure, FailureCode
from aisci_nb.db import connect
from aisci_nb.settings import load_settings
from aisci_nb.storage.store import open_store
from aisci_nb.worker.loop import Worker
from aisci_nb.worker.pipelines import Step
from aisci_nb.worker.session import RunSession

RECORDED = Step("Stage_1", "(no notebook)", "prints the claim")


def record(session: RunSession, step: Step, idea: dict) -> Failure | None:
    claim = session.claim
    print(claim.run_id, claim.run["attempt"], claim.epoch, flush=True)
    if claim.run.get("priority") == 1 and claim.run["attempt"] == 1:
        return Failure(FailureCode.TIMEOUT, "a retryable failure", None, step.name)
    return None


if __name__ == "__main__":
    settings = load_settings()
    worker = Worker(settings, connect(settings), open_store(settings), steps=(RECORDED,),
                    run_step=record)
    worker.run_forever(exit_when_idle=True)
    sys.exit(0)
