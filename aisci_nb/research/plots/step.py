"""The Plots step: the stages' outputs in, the kept figures and their manifest out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..llm import LLM
from .figures import make_figures
from .inputs import STAGES, StageResult, example_paths, load_stages
from .select import select_figures

MANIFEST = "figures.json"


def stage_paths(ctx: Any) -> dict[str, tuple[Path, Path]]:
    """Each stage's (journal, best data) from the run's inputs; the packaged example when
    the notebook runs on its own (no inputs at all)."""
    if not ctx.inputs:
        ctx.log("no run inputs: using the packaged example stage outputs", level="warn")
        return {s: example_paths(s) for s in STAGES}
    paths = {s: (ctx.input(s, "journal"), ctx.input(s, "best_data"))
             for s in STAGES if s in ctx.inputs}
    if not paths:
        raise LookupError(f"no stage outputs among the inputs ({sorted(ctx.inputs)}): the "
                          "Plots step needs the journal and best_data of Stage_1..Stage_4")
    return paths


def summarize(stages: list[StageResult]) -> list[dict[str, Any]]:
    """The best node of each stage, for the paper's results table."""
    rows = []
    for s in stages:
        best = s.best
        if best is None or best.metric is None or best.metric.value is None:
            continue
        seeds = best.seeds
        rows.append({"stage": s.stage, "goal": s.journal.goal, "metric": best.metric.name,
                     "mean": seeds.mean if seeds else best.metric.value,
                     "std": seeds.std if seeds else 0.0,
                     "seeds": len(seeds.values) if seeds else 1, "config": s.data.config})
    return rows


def run_plots(ctx: Any, llm: LLM | None, out: Path, title: str) -> dict[str, Any]:
    """Draw, select, register; the manifest (also registered as `figures`)."""
    stages = load_stages(stage_paths(ctx))
    figures = make_figures(stages, out)
    ctx.progress(0.5, total_nodes=len(figures))
    outcome = select_figures(llm, figures, title)
    for fig in outcome.kept:
        ctx.register_artifact(fig.png, kind="figure", name=fig.name)
        ctx.register_artifact(fig.pdf, kind="figure", name=f"{fig.name}_pdf")
    manifest = {"title": title, "stages": [s.stage for s in stages],
                "results": summarize(stages),
                "figures": [f.to_json() for f in outcome.kept],
                "dropped": outcome.dropped, "notes": outcome.notes}
    path = out / MANIFEST
    path.write_text(json.dumps(manifest, indent=1))
    ctx.register_artifact(path, kind="file", name="figures")
    ctx.metric("figures", len(outcome.kept))
    return manifest
