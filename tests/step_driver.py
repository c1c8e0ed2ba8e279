"""A worker process running test step notebooks: the real Worker with custom steps.

Usage: python -m tests.step_driver NOTEBOOKS_DIR STEPS_JSON, where STEPS_JSON is a list of
{"name", "notebook", "parameters"?}. Runs until the queue is empty.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from aisci_nb.db import connect
from aisci_nb.settings import load_settings
from aisci_nb.storage.store import open_store
from aisci_nb.worker.loop import Worker
from aisci_nb.worker.pipelines import Step

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    notebooks_dir, spec = Path(sys.argv[1]), json.loads(sys.argv[2])
    steps = tuple(Step(s["name"], s["notebook"], s["name"], s.get("parameters", {}))
                  for s in spec)
    settings = load_settings()
    worker = Worker(settings, connect(settings), open_store(settings), notebooks_dir, steps)
    worker.run_forever(exit_when_idle=True)
