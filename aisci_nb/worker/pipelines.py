"""The pipelines a worker can run: named, ordered steps, each a parameterized notebook.

The step notebooks live at the top of the repository (`notebooks/`, as the design card has
them) and ship inside the wheel as `aisci_nb/_notebooks/` (copied there by the build hook in
`setup.py`), so a pod that `pip install`s aisci finds them as a checkout does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGED_NOTEBOOKS = Path(__file__).resolve().parents[1] / "_notebooks"  # installed wheel
CHECKOUT_NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"  # source checkout


def notebooks_dir() -> Path:
    """Where the step notebooks are: inside the installed package, else in the checkout."""
    return PACKAGED_NOTEBOOKS if PACKAGED_NOTEBOOKS.is_dir() else CHECKOUT_NOTEBOOKS


NOTEBOOKS_DIR = notebooks_dir()


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
    key_template: str = "runs/{id}/notebooks/{name}.ipynb"  # where its executed notebook goes

    def notebook_path(self, root: Path = NOTEBOOKS_DIR) -> Path:
        return root / self.notebook

    def artifact_key(self, run_id: str) -> str:
        return self.key_template.format(id=run_id, name=self.name)


@dataclass(frozen=True)
class Pipeline:
    """A named sequence of steps; a run carries its steps in order, skipping finished ones."""

    name: str
    steps: tuple[Step, ...]

    def __iter__(self):
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"pipeline {self.name!r} has no step {name!r}; "
                       f"its steps: {', '.join(s.name for s in self.steps) or 'none'}")


STAGE_STEPS: tuple[Step, ...] = (
    Step("Stage_1", "stages/stage_1_initial_implementation.ipynb", "initial implementation"),
    Step("Stage_2", "stages/stage_2_baseline_tuning.ipynb", "baseline tuning",
         requires=(("Stage_1", "journal"), ("Stage_1", "best_data"))),
    Step("Stage_3", "stages/stage_3_creative_research.ipynb", "creative research",
         requires=(("Stage_2", "journal"), ("Stage_2", "best_data"))),
    Step("Stage_4", "stages/stage_4_ablation_studies.ipynb", "ablation studies",
         requires=(("Stage_3", "journal"), ("Stage_3", "best_data"))),
)
# Served for an ideation request (its id in place of a run id).
IDEATION_STEP = Step("Ideation", "ideation.ipynb", "propose and refine research ideas",
                     key_template="ideation/{id}/{name}.ipynb")
IDEATION = Pipeline("ideation", (IDEATION_STEP,))
PAPER = Pipeline("paper", (
    Step("Plots", "plots.ipynb", "aggregate the stages' results into the paper's figures",
         requires=(("Stage_1", "journal"), ("Stage_1", "best_data"))),
    Step("Writeup", "writeup.ipynb", "write the paper and compile it to PDF",
         requires=(("Plots", "figures"),)),
))
REVIEW = Pipeline("review", (
    Step("Review", "review.ipynb", "review the paper in the NeurIPS form",
         requires=(("Writeup", "paper"),), validation=True),
))
PAPER_STEPS: tuple[Step, ...] = PAPER.steps + REVIEW.steps
# The paper steps read the journals of all four stages (PLAN.md's contract); they join the
# experiment pipeline once the tree search provides Stage_1..Stage_4 (issue 16).
EXPERIMENT = Pipeline("experiment", STAGE_STEPS + (PAPER_STEPS if len(STAGE_STEPS) == 4
                                                   else ()))

PIPELINES: dict[str, Pipeline] = {p.name: p for p in (EXPERIMENT, IDEATION, PAPER, REVIEW)}
EXPERIMENT_STEPS: tuple[Step, ...] = EXPERIMENT.steps
# Every step a run of the experiment pipeline can have, in order: what a re-run names.
PIPELINE_STEP_NAMES: tuple[str, ...] = tuple(s.name for s in STAGE_STEPS + PAPER_STEPS)


def pipeline(name: str) -> Pipeline:
    """The registered pipeline `name`; KeyError listing the known ones."""
    try:
        return PIPELINES[name]
    except KeyError:
        raise KeyError(f"no pipeline {name!r}; known: {', '.join(PIPELINES)}") from None


def register(p: Pipeline) -> Pipeline:
    """Add (or replace) a pipeline: the seam where a new kind of run plugs in."""
    PIPELINES[p.name] = p
    return p
