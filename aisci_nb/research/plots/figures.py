"""The paper's figures, drawn from the stages' results: one PNG (for the UI and the review)
and one PDF (vector, for LaTeX) each, with the numbers they show kept beside them so the
model pass and the paper can check and cite them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on a pod; must precede pyplot
import matplotlib.pyplot as plt

from .inputs import StageResult

STYLE = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 9,
         "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.spines.top": False,
         "axes.spines.right": False, "savefig.dpi": 200}


@dataclass
class Figure:
    name: str  # also the LaTeX label: fig:<name>
    title: str
    caption: str
    png: Path
    pdf: Path
    data: dict[str, Any] = field(default_factory=dict)  # what is plotted, for the checks

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "png": self.png.name, "pdf": self.pdf.name}


def _save(fig: Any, out: Path, name: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    png, pdf = out / f"{name}.png", out / f"{name}.pdf"
    fig.savefig(png)
    fig.savefig(pdf)
    plt.close(fig)
    return png, pdf


def training_curves(stages: list[StageResult], out: Path) -> Figure | None:
    shown = [s for s in stages if s.data.series]
    if not shown:
        return None
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.0), squeeze=False)
    data: dict[str, Any] = {}
    for ax, s in zip(axes[0], shown, strict=True):
        for key, values in s.data.series.items():
            if "loss" in key:
                ax.plot(range(1, len(values) + 1), values, label=key.replace("_", " "))
        ax.set(title=s.stage.replace("_", " "), xlabel="epoch", ylabel="loss")
        ax.legend(frameon=False)
        data[s.stage] = {k: v[-1] for k, v in s.data.series.items() if v}
    png, pdf = _save(fig, out, "training_curves")
    return Figure("training_curves", "Training curves",
                  "Training and validation loss per epoch of the best node of each stage.",
                  png, pdf, {"final_values": data})


def sweep(stages: list[StageResult], out: Path) -> Figure | None:
    tuned = next((s for s in stages if s.stage == "Stage_2" and s.data.sweeps), None)
    if tuned is None:
        return None
    params = list(tuned.data.sweeps.items())
    fig, axes = plt.subplots(1, len(params), figsize=(3.6 * len(params), 3.0), squeeze=False)
    metric = _metric_name(tuned)
    for ax, (param, results) in zip(axes[0], params, strict=True):
        xs, ys = _numeric_sorted(results)
        ax.plot(xs, ys, marker="o")
        if xs and min(xs) > 0 and max(xs) / min(xs) >= 10:
            ax.set_xscale("log")
        ax.set(xlabel=param.replace("_", " "), ylabel=metric.replace("_", " "),
               title=f"sweep over {param.replace('_', ' ')}")
    png, pdf = _save(fig, out, "stage2_sweep")
    return Figure("stage2_sweep", "Hyperparameter sweep",
                  f"Stage 2 hyperparameter sweep: {metric.replace('_', ' ')} for each value "
                  "tried.", png, pdf, {"sweeps": tuned.data.sweeps})


def ablations(stages: list[StageResult], out: Path) -> Figure | None:
    ablated = next((s for s in stages if s.stage == "Stage_4" and s.data.ablations), None)
    if ablated is None:
        return None
    names = list(ablated.data.ablations)
    values = [ablated.data.ablations[n] for n in names]
    fig, ax = plt.subplots(figsize=(5.5, 0.45 * len(names) + 1.2))
    ax.barh(names, values, color=["#1f77b4" if i else "#2ca02c" for i in range(len(names))])
    lo = min(values)
    ax.set_xlim(max(0.0, lo - (max(values) - lo) - 0.02), max(values) + 0.01)
    ax.invert_yaxis()
    ax.set(xlabel=_metric_name(ablated).replace("_", " "), title="ablations")
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.3f}", va="center", fontsize=9)
    png, pdf = _save(fig, out, "stage4_ablations")
    return Figure("stage4_ablations", "Ablations",
                  "Stage 4 ablations: the metric of the full model and of each variant with "
                  "one component removed.", png, pdf, {"ablations": ablated.data.ablations})


def best_per_stage(stages: list[StageResult], out: Path) -> Figure | None:
    rows = []
    for s in stages:
        best = s.best
        if best is None or best.metric is None or best.metric.value is None:
            continue
        mean = best.seeds.mean if best.seeds else best.metric.value
        std = best.seeds.std if best.seeds else 0.0
        rows.append((s.stage, mean, std, best.metric.name))
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(5.0, 3.0))
    labels = [r[0].replace("_", " ") for r in rows]
    ax.bar(labels, [r[1] for r in rows], yerr=[r[2] for r in rows], capsize=4)
    lo = min(r[1] - r[2] for r in rows)
    ax.set_ylim(max(0.0, lo - 0.05), None)
    ax.set(ylabel=rows[0][3].replace("_", " "), title="best node per stage (mean ± std over seeds)")
    png, pdf = _save(fig, out, "best_per_stage")
    return Figure("best_per_stage", "Best metric per stage",
                  "Best node of each stage: mean and standard deviation of the metric over "
                  "seeds.", png, pdf,
                  {"stages": {r[0]: {"mean": r[1], "std": r[2]} for r in rows}})


def _metric_name(stage: StageResult) -> str:
    best = stage.best
    if best is not None and best.metric is not None:
        return best.metric.name
    return next(iter(stage.data.metrics), "metric")


def _numeric_sorted(results: dict[str, float]) -> tuple[list[Any], list[float]]:
    try:
        pairs = sorted((float(k), v) for k, v in results.items())
    except ValueError:  # categorical values: keep their order
        pairs = list(results.items())  # type: ignore[arg-type]
    return [p[0] for p in pairs], [p[1] for p in pairs]


MAKERS: tuple[Callable[[list[StageResult], Path], Figure | None], ...] = (
    training_curves, sweep, ablations, best_per_stage)


def make_figures(stages: list[StageResult], out: Path) -> list[Figure]:
    """Every figure the stages' data supports (a missing sweep or ablation: no figure)."""
    with plt.rc_context(STYLE):
        return [f for make in MAKERS if (f := make(stages, out)) is not None]
