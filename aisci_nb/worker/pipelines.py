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
    # The automatic review: the run is AUTO_VALIDATING while it runs, and a pipeline with
    # one ends AWAITING_HUMAN instead of COMPLETED.
    validation: bool = False

    def notebook_path(self, root: Path = NOTEBOOKS_DIR) -> Path:
        return root / self.notebook

    def artifact_key(self, run_id: str) -> str:
        return f"runs/{run_id}/notebooks/{self.name}.ipynb"


STAGE_STEPS: tuple[Step, ...] = (
    Step("Stage_1", "stages/stage_1_initial_implementation.ipynb", "initial implementation"),
)
PAPER_STEPS: tuple[Step, ...] = (
    Step("Plots", "plots.ipynb", "aggregate the stages' results into the paper's figures",
         requires=(("Stage_1", "journal"), ("Stage_1", "best_data"))),
    Step("Writeup", "writeup.ipynb", "write the paper and compile it to PDF",
         requires=(("Plots", "figures"),)),
    Step("Review", "review.ipynb", "review the paper in the NeurIPS form",
         requires=(("Writeup", "paper"),), validation=True),
)
# The paper steps read the journals of all four stages (PLAN.md's contract); they join the
# pipeline once the tree search provides Stage_1..Stage_4 (issue 16).
EXPERIMENT_STEPS: tuple[Step, ...] = STAGE_STEPS + (PAPER_STEPS if len(STAGE_STEPS) == 4
                                                    else ())

# Every step a run of the experiment pipeline can have, in order: what a re-run names.
PIPELINE_STEP_NAMES: tuple[str, ...] = tuple(s.name for s in STAGE_STEPS + PAPER_STEPS)
