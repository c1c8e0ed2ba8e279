"""OpenAI's chat completions through the official `openai` SDK, and any OpenAI-compatible
server (vLLM, Ollama, llama.cpp) by base URL.

Reasoning models (gpt-5*, o1/o3/o4*) take `max_completion_tokens` and no temperature; the
others take `max_tokens` (what compatible servers understand) and a temperature. Retries
are ours (`retry.py`), so the SDK's are off.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import openai

from .errors import LLMBadRequest
from .retry import call_with_retries
from .sdk_errors import raise_translated
from .types import ChatRequest, ChatResponse, Message, ToolCall, Usage

REASONING = re.compile(r"^(o\d|gpt-5)", re.IGNORECASE)


def is_reasoning_model(model: str) -> bool:
    return bool(REASONING.match(model.rsplit("/", 1)[-1]))


def wire_message(m: Message) -> dict[str, Any]:
    """One message in the chat-completions format."""
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content}
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function", "function": {
            "name": c.name, "arguments": json.dumps(c.arguments)}} for c in m.tool_calls]
    return out


def request_body(request: ChatRequest, model: str) -> dict[str, Any]:
    """The keyword arguments of `chat.completions.create` for a request."""
    body: dict[str, Any] = {"model": model,
                            "messages": [wire_message(m) for m in request.messages]}
    if request.tools:
        body["tools"] = [{"type": "function", "function": {
            "name": t.name, "description": t.description, "parameters": t.parameters}}
            for t in request.tools]
    if request.json_output:
        body["response_format"] = {"type": "json_object"}
    reasoning = is_reasoning_model(model)
    if request.max_tokens is not None:
        body["max_completion_tokens" if reasoning else "max_tokens"] = request.max_tokens
    if request.temperature is not None and not reasoning:
        body["temperature"] = request.temperature
    return body


def _arguments(text: str | None, name: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise LLMBadRequest(f"the model's call of {name} has arguments that are not JSON: "
                            f"{exc}") from None
    return value if isinstance(value, dict) else {"value": value}


class OpenAIProvider:
    """`name` is "openai", or "openai-compatible" for a server found by `base_url`."""

    def __init__(self, api_key: str | None, *, base_url: str | None = None,
                 timeout_s: float = 300.0, max_attempts: int = 5,
                 name: str | None = None) -> None:
        self.name = name or ("openai-compatible" if base_url else "openai")
        self._key = api_key
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        # A local server without authentication still needs some key for the SDK.
        self.client = openai.OpenAI(api_key=api_key or "unused", base_url=base_url,
                                    max_retries=0, timeout=timeout_s)

    def complete(self, request: ChatRequest, model: str) -> ChatResponse:
        started = time.perf_counter()
        body = request_body(request, model)
        what = f"{self.name} {model} ({request.role})"

        def attempt(seconds_left: float) -> Any:
            try:
                return self.client.chat.completions.create(**body, timeout=seconds_left)
            except openai.OpenAIError as exc:
                raise_translated(exc, openai, what=what, secrets=[self._key])

        completion = call_with_retries(attempt, timeout_s=self.timeout_s,
                                       max_attempts=self.max_attempts, what=what)
        if not completion.choices:
            raise LLMBadRequest(f"{what}: the reply has no choices")
        message = completion.choices[0].message
        calls = tuple(ToolCall(c.id, c.function.name, _arguments(c.function.arguments,
                                                                 c.function.name))
                      for c in (message.tool_calls or []) if c.type == "function")
        usage = completion.usage
        details = getattr(usage, "prompt_tokens_details", None) if usage else None
        return ChatResponse(
            text=message.content or "", tool_calls=calls,
            usage=Usage(input_tokens=usage.prompt_tokens if usage else 0,
                        output_tokens=usage.completion_tokens if usage else 0,
                        cached_tokens=(getattr(details, "cached_tokens", None) or 0)),
            provider=self.name, model=model,
            latency_s=time.perf_counter() - started)
