"""The steps of a research run, in order, each a parameterized notebook under `notebooks/`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"


@dataclass(frozen=True)
class Step:
    name: str
    notebook: str  # relative to the notebooks directory
    desc: str
    # Values for the notebook's declared parameters beyond the run context the worker offers.
    parameters: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # Inputs (step, output name) it cannot run without: checked before its kernel starts.
    requires: tuple[tuple[str, str], ...] = ()
    timeout_s: float | None = None  # overrides STEP_TIMEOUT_S
    cell_timeout_s: float | None = None  # overrides CELL_TIMEOUT_S

    def notebook_path(self, root: Path = NOTEBOOKS_DIR) -> Path:
        return root / self.notebook

    def artifact_key(self, run_id: str) -> str:
        return f"runs/{run_id}/notebooks/{self.name}.ipynb"


EXPERIMENT_STEPS: tuple[Step, ...] = (
    Step("Stage_1", "stages/stage_1_initial_implementation.ipynb", "initial implementation"),
)
