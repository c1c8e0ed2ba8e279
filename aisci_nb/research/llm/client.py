"""`LLM`: what research code calls. It picks the provider and model for a role, and tells
an observer about every call (usage events, budgets) — the providers know nothing of runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .types import ChatRequest, ChatResponse, Message, Provider, ToolSpec

Observer = Callable[[ChatRequest, ChatResponse], None]
Guard = Callable[[ChatRequest], None]


class LLM:
    def __init__(self, providers: dict[str, tuple[Provider, str]],
                 observer: Observer | None = None, guard: Guard | None = None) -> None:
        """`providers` maps a research role (or "*", the fallback) to (provider, model);
        `guard` may refuse a call before it is made (a spent budget), `observer` hears of
        every answered one (usage events)."""
        self.providers = providers
        self.observer = observer
        self.guard = guard

    def route(self, role: str) -> tuple[Provider, str]:
        return self.providers.get(role) or self.providers["*"]

    def chat(self, role: str, messages: Sequence[Message], *,
             tools: Sequence[ToolSpec] = (), json_output: bool = False,
             temperature: float | None = None, max_tokens: int | None = None) -> ChatResponse:
        request = ChatRequest(role, tuple(messages), tuple(tools), json_output, temperature,
                              max_tokens)
        provider, model = self.route(role)
        if self.guard is not None:
            self.guard(request)
        response = provider.complete(request, model)
        if self.observer is not None:
            self.observer(request, response)
        return response
