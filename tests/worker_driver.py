"""A real worker process (`aisci_nb.worker.main.main`: signals, lease, reaper, pickup) whose
pipeline is the tiny test notebook `notebooks/tick.ipynb`, once per step named in
`TEST_STEPS` (comma-separated, default `Stage_1`); `TEST_NOTEBOOK` names another one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from aisci_nb.worker.main import main
from aisci_nb.worker.pipelines import Step

NOTEBOOKS = Path(__file__).resolve().with_name("notebooks")

if __name__ == "__main__":
    names = os.environ.get("TEST_STEPS", "Stage_1").split(",")
    notebook = os.environ.get("TEST_NOTEBOOK", "tick.ipynb")
    steps = tuple(Step(name, notebook, f"test step {name}") for name in names)
    sys.exit(main([*sys.argv[1:], "--notebooks-dir", str(NOTEBOOKS)], steps=steps))
