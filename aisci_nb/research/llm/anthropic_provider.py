"""Anthropic's Messages API through the official `anthropic` SDK, with a direct API key.

System messages become the `system` parameter, tool results become `tool_result` blocks of
a user turn, and JSON output (which the Messages API has no switch for) is asked for in the
system prompt and taken from the reply's first JSON object. Anthropic counts cache reads
and writes apart from `input_tokens`; `Usage.input_tokens` includes them, as OpenAI's does.
"""

from __future__ import annotations

import inspect
import json
import time
from typing import Any

import anthropic

from .errors import LLMBadRequest
from .retry import call_with_retries
from .sdk_errors import raise_translated
from .types import ChatRequest, ChatResponse, Message, ToolCall, Usage

DEFAULT_MAX_TOKENS = 8192  # the Messages API requires a limit
# Recent SDKs dropped `temperature` (the newest models fix their own sampling): it is sent
# only where the installed SDK still has it.
TAKES_TEMPERATURE = "temperature" in inspect.signature(
    anthropic.resources.messages.Messages.create).parameters
JSON_INSTRUCTION = ("Reply with one JSON object and nothing else: no prose, no code fences.")


def _turn(m: Message) -> dict[str, Any]:
    if m.role == "tool":
        return {"role": "user", "content": [{"type": "tool_result",
                                             "tool_use_id": m.tool_call_id or "",
                                             "content": m.content}]}
    if m.tool_calls:
        blocks: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
        blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
                   for c in m.tool_calls]
        return {"role": "assistant", "content": blocks}
    return {"role": m.role, "content": m.content}


def request_body(request: ChatRequest, model: str) -> dict[str, Any]:
    """The keyword arguments of `messages.create` for a request."""
    system = [m.content for m in request.messages if m.role == "system"]
    if request.json_output:
        system.append(JSON_INSTRUCTION)
    turns: list[dict[str, Any]] = []
    for m in request.messages:
        if m.role == "system":
            continue
        turn = _turn(m)
        if turns and turns[-1]["role"] == turn["role"] == "user" and m.role == "tool":
            previous = turns[-1]["content"]  # consecutive tool results share one user turn
            if isinstance(previous, list):
                previous.extend(turn["content"])
                continue
        turns.append(turn)
    body: dict[str, Any] = {"model": model, "messages": turns,
                            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS}
    if system:
        body["system"] = "\n\n".join(system)
    if request.tools:
        body["tools"] = [{"name": t.name, "description": t.description,
                          "input_schema": t.parameters} for t in request.tools]
    if request.temperature is not None and TAKES_TEMPERATURE:
        body["temperature"] = request.temperature
    return body


def json_text(text: str) -> str:
    """The first JSON object in a reply (models wrap it in prose or fences now and then)."""
    start = text.find("{")
    while start != -1:
        try:
            value, _ = json.JSONDecoder().raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        return json.dumps(value)
    return text


class AnthropicProvider:
    name = "anthropic"

    def __init__(self, api_key: str | None, *, base_url: str | None = None,
                 timeout_s: float = 300.0, max_attempts: int = 5) -> None:
        self._key = api_key
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.client = anthropic.Anthropic(api_key=api_key, base_url=base_url, max_retries=0,
                                          timeout=timeout_s)

    def complete(self, request: ChatRequest, model: str) -> ChatResponse:
        started = time.perf_counter()
        body = request_body(request, model)
        what = f"anthropic {model} ({request.role})"

        def attempt(seconds_left: float) -> Any:
            try:
                return self.client.messages.create(**body, timeout=seconds_left)
            except anthropic.AnthropicError as exc:
                raise_translated(exc, anthropic, what=what, secrets=[self._key])

        reply = call_with_retries(attempt, timeout_s=self.timeout_s,
                                  max_attempts=self.max_attempts, what=what)
        texts, calls = [], []
        for block in reply.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                if not isinstance(block.input, dict):
                    raise LLMBadRequest(f"{what}: tool_use input is not an object")
                calls.append(ToolCall(block.id, block.name, dict(block.input)))
        text = "".join(texts)
        if request.json_output:
            text = json_text(text)
        u = reply.usage
        cache_read = getattr(u, "cache_read_input_tokens", None) or 0
        cache_write = getattr(u, "cache_creation_input_tokens", None) or 0
        return ChatResponse(
            text=text, tool_calls=tuple(calls),
            usage=Usage(input_tokens=u.input_tokens + cache_read + cache_write,
                        output_tokens=u.output_tokens, cached_tokens=cache_read),
            provider=self.name, model=model, latency_s=time.perf_counter() - started)
