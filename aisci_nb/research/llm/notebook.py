"""`llm_for(ctx)`: the notebook's entry to the LLM layer, wired to the run.

Every call is counted as an `ai.llm.usage` event of the run (with the step's name), priced,
added to the run's ledger and held to its budget. Keys come from the kernel's environment
only: nothing here writes them anywhere.
"""

from __future__ import annotations

from typing import Any

from ...settings import LLMSettings
from .client import LLM
from .ledger import Budget, Ledger
from .routing import build_llm
from .usage import UsageMeter

_ATTR = "_aisci_llm"


def llm_for(ctx: Any, settings: LLMSettings | None = None) -> LLM:
    """The `LLM` of this run context (one per context, so the scripted provider's replay
    order and the budget are the step's): routed per role from the settings."""
    cached = getattr(ctx, _ATTR, None)
    if cached is not None and settings is None:
        return cached
    settings = settings or LLMSettings()
    meter = UsageMeter(ctx.events.emit, ctx.stage, ledger=Ledger.from_env(),
                       budget=Budget(settings.llm_budget_usd, settings.llm_step_budget_usd),
                       prices_file=settings.llm_prices_file)
    llm = build_llm(settings, observer=meter.observe, guard=meter.guard,
                    on_notice=lambda message: ctx.log(message, level="warn"))
    llm.meter = meter  # type: ignore[attr-defined]
    setattr(ctx, _ATTR, llm)
    return llm
