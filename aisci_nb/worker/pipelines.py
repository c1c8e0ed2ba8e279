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

    def notebook_path(self, root: Path = NOTEBOOKS_DIR) -> Path:
        return root / self.notebook

    def artifact_key(self, run_id: str) -> str:
        return f"runs/{run_id}/notebooks/{self.name}.ipynb"


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


EXPERIMENT = Pipeline("experiment", (
    Step("Stage_1", "stages/stage_1_initial_implementation.ipynb", "initial implementation"),
))
# Filled as their notebooks land (ideation.ipynb, plots/writeup/review.ipynb).
IDEATION = Pipeline("ideation", ())
PAPER = Pipeline("paper", ())
REVIEW = Pipeline("review", ())

PIPELINES: dict[str, Pipeline] = {p.name: p for p in (EXPERIMENT, IDEATION, PAPER, REVIEW)}
EXPERIMENT_STEPS: tuple[Step, ...] = EXPERIMENT.steps


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
