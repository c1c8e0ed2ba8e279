"""The one small interface research code talks to a model through.

Providers (OpenAI, Anthropic, OpenAI-compatible servers, the offline scripted provider)
translate these types to and from their wire formats; nothing above this layer sees an SDK.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # for role == "tool": the call this answers


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call; `parameters` is a JSON Schema object."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object",
                                                               "properties": {}})


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0


@dataclass(frozen=True)
class ChatResponse:
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    provider: str = ""
    model: str = ""
    latency_s: float = 0.0

    def as_message(self) -> Message:
        """The reply as the assistant turn to append to the conversation."""
        return Message("assistant", self.text, self.tool_calls)


@dataclass(frozen=True)
class ChatRequest:
    """What one call asks; `role` is the research role (ideation, code, review, ...), used to
    pick the model and to key the scripted provider's recordings."""

    role: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    json_output: bool = False
    temperature: float | None = None
    max_tokens: int | None = None


class Provider(Protocol):
    name: str

    def complete(self, request: ChatRequest, model: str) -> ChatResponse: ...
