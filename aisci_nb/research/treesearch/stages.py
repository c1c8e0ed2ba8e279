"""The four stages: what each aims at, which operation grows its tree, and when it is done.

1 initial implementation — done at the first working implementation.
2 baseline tuning — done when at least `min_tuned` hyperparameter proposals ran and the best
  one trains stably (its validation loss settled).
3 creative research — done when its iteration budget is spent (with a working node).
4 ablation studies — done when every planned ablation has a working node.
The best node of a stage seeds the next one.
"""

from __future__ import annotations

from dataclasses import dataclass

from .journal import Journal
from .metrics import is_stable, series


@dataclass(frozen=True)
class StageSpec:
    name: str
    number: int
    title: str
    goal: str
    grow_op: str  # the operation applied to a working node: improve, tune, ablate
    drafts: bool  # starts from scratch (stage 1) rather than from the previous best node


STAGES: dict[str, StageSpec] = {s.name: s for s in (
    StageSpec("Stage_1", 1, "initial implementation",
              "Write a working implementation of the idea's experiment that trains, "
              "evaluates and saves its results and plots.", "improve", True),
    StageSpec("Stage_2", 2, "baseline tuning",
              "Tune the baseline's hyperparameters (learning rate, epochs, batch size, width) "
              "without changing the model, until training is stable.", "tune", False),
    StageSpec("Stage_3", 3, "creative research",
              "Explore improvements that test the idea's hypothesis: new components, "
              "regularisation, training schemes.", "improve", False),
    StageSpec("Stage_4", 4, "ablation studies",
              "Ablate the components of the best model, one at a time, to show what each "
              "contributes.", "ablate", False),
)}


def spec_for(stage: str) -> StageSpec:
    try:
        return STAGES[stage]
    except KeyError:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}") from None


@dataclass(frozen=True)
class Rules:
    min_tuned: int = 2  # stage 2: hyperparameter proposals that must have run
    stability_series: str = "val_loss"
    stability_window: int = 3
    stability_tol: float = 0.15


def is_complete(spec: StageSpec, journal: Journal, iteration: int, max_iterations: int,
                planned: list[str] | None = None, rules: Rules = Rules()) -> bool:
    """Whether the stage met its goal (it then ends, before its iteration limit)."""
    good = journal.good
    if spec.number == 1:
        return bool(good)
    if spec.number == 2:
        best = journal.best()
        tuned = [n for n in good if n.op == "tune"]
        return (len(tuned) >= rules.min_tuned and best is not None
                and best.id in {n.id for n in tuned}
                and bool(best.stable))
    if spec.number == 3:
        return bool(good) and iteration >= max_iterations
    done = {n.label for n in good if n.op in ("ablate", "debug")}  # a fixed ablation counts
    return bool(planned) and all(name in done for name in planned or [])


def stability(data: dict, rules: Rules = Rules()) -> bool:
    """Whether a node's saved curve (its validation loss by default) settled."""
    return is_stable(series(data, rules.stability_series), rules.stability_window,
                     rules.stability_tol)
