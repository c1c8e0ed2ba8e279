"""What a stage notebook calls: one stage of the search wired to the run context — node
events and progress through `ctx`, files through `ctx.register_artifact`, the previous
stage's journal and best data as the seed, and the LLM from the settings."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ...errors import MissingInput
from ..llm import LLM, llm_for
from .agent import Agent
from .config import TreeSearchSettings
from .journal import Journal
from .search import SearchConfig, StageResult, TreeSearch
from .stages import spec_for

__all__ = ["TreeSearchSettings", "previous_outputs", "previous_stage", "run_stage",
           "spec_for", "summary"]
HANDED_ON = ("journal", "best_data")

log = logging.getLogger(__name__)


def previous_stage(stage: str) -> str | None:
    """Stage_1 → None, Stage_N → Stage_{N-1}."""
    number = spec_for(stage).number
    return f"Stage_{number - 1}" if number > 1 else None


def previous_outputs(ctx: Any, stage: str) -> dict[str, Path]:
    """The previous stage's journal and best data, from the step inputs; run on its own
    (JupyterLab, nbval: no inputs) the previous stage notebook's files in this directory."""
    before = previous_stage(stage)
    if before is None:
        return {}
    try:
        return {name: ctx.input(before, name) for name in HANDED_ON}
    except MissingInput:
        local = {"journal": Path("treesearch") / before / "journal.json",
                 "best_data": Path("treesearch") / before / "best_data.json"}
        if getattr(ctx, "debug", False) and all(p.exists() for p in local.values()):
            log.warning("%s: no step inputs; using %s's files in %s", stage, before,
                        local["journal"].parent)
            return local
        raise


class ContextObserver:
    """The search's observer over a notebook's run context."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def event(self, event_type: str, **data: Any) -> None:
        self.ctx.events.emit(event_type, **{k: v for k, v in data.items() if v is not None})

    def progress(self, progress: float, **counters: Any) -> None:
        self.ctx.progress(progress, **{k: v for k, v in counters.items() if v is not None})

    def upload(self, path: Path, *, kind: str, name: str | None, key: str | None = None,
               output: bool = True) -> str | None:
        full = f"runs/{self.ctx.run_id}/artifacts/{self.ctx.stage}/{key}" if key else None
        stored = self.ctx.register_artifact(path, kind=kind, name=name, key=full,
                                            output=output)
        return stored.key


def search_config(stage: str, settings: TreeSearchSettings) -> SearchConfig:
    return SearchConfig(max_iterations=settings.max_iterations(spec_for(stage).number),
                        num_workers=settings.num_workers, policy=settings.policy(),
                        seeds=settings.seeds, search_seed=settings.search_seed,
                        limits=settings.limits())


def run_stage(ctx: Any, stage: str, *, journal: Path | None = None,
              best_data: Path | None = None, llm: LLM | None = None,
              settings: TreeSearchSettings | None = None,
              workdir: Path | None = None) -> StageResult:
    """Run `stage`'s search; `journal`/`best_data` are the previous stage's outputs."""
    settings = settings or TreeSearchSettings()
    spec = spec_for(stage)
    cfg = search_config(stage, settings)
    inherited = None
    if spec.number > 1:
        if journal is None:
            raise ValueError(f"{stage} starts from the previous stage's journal; none given")
        previous = Journal.load(journal)
        inherited = previous.best_node
        if inherited is None:
            raise ValueError(f"the journal of {previous.stage} names no best node")
    agent = Agent(llm or llm_for(ctx), ctx.idea or {}, spec, cfg.metric,
                  cfg.limits.wall_s)
    search = TreeSearch(spec, agent, cfg, workdir or Path("treesearch") / stage,
                        ContextObserver(ctx), inherited=inherited, inherited_data=best_data)
    result = search.run()
    best = result.best
    if best.metric is not None and best.metric.value is not None:
        ctx.metric(best.metric.name, best.metric.value)
        if best.seeds:
            ctx.metric(f"{best.metric.name}_mean", best.seeds["mean"])
            ctx.metric(f"{best.metric.name}_std", best.seeds["std"])
    return result


def summary(result: StageResult) -> dict[str, Any]:
    """Per-stage figures: nodes total / buggy / debugged, best metric, wall time."""
    j = result.journal
    m = result.best.metric
    return {"stage": j.stage, "nodes": len(j.own), "buggy": len(j.buggy),
            "debugged": len(j.debugged), "best_node": result.best.id,
            "best_metric": m.value if m else None, "seeds": result.best.seeds and
            {k: result.best.seeds[k] for k in ("mean", "std")},
            "wall_s": round(result.wall_s, 1)}
