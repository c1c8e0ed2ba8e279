"""Counting every call: its `ai.llm.usage` event (tokens, cost, latency) and its share of
the run's budget. The providers know nothing of this; `LLM` calls `UsageMeter` around them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .ledger import Budget, Ledger
from .pricing import cost_usd
from .types import ChatRequest, ChatResponse

Emit = Callable[..., Any]  # RunEmitter.emit(type, **data)


class UsageMeter:
    """`guard` refuses a call once the budget is spent; `observe` prices an answered call,
    emits its usage, adds it to the ledger and raises `BudgetExceeded` if it crossed."""

    def __init__(self, emit: Emit | None, step: str, *, ledger: Ledger | None = None,
                 budget: Budget | None = None, prices_file: Path | None = None) -> None:
        self.emit = emit
        self.step = step
        self.ledger = ledger or Ledger()
        self.budget = budget or Budget()
        self.prices_file = prices_file

    def guard(self, request: ChatRequest) -> None:
        self.budget.check(self.ledger, self.step)

    def observe(self, request: ChatRequest, response: ChatResponse) -> None:
        usage = response.usage
        cost, _ = cost_usd(response.model, usage, provider=response.provider,
                           overrides=self.prices_file)
        if self.emit is not None:
            self.emit("ai.llm.usage", model=response.model, provider=response.provider,
                      role=request.role, step=self.step, prompt_tokens=usage.input_tokens,
                      completion_tokens=usage.output_tokens, cached_tokens=usage.cached_tokens,
                      cost_usd=round(cost, 8), latency_s=round(response.latency_s, 4))
        self.ledger.add(self.step, cost)
        self.budget.check(self.ledger, self.step)
