"""The LLM layer: one interface (`LLM.chat`), providers behind it, the offline scripted one
included. Research code imports from here only."""

from .client import LLM
from .scripted import ScriptedProvider, ScriptMissing
from .types import ChatRequest, ChatResponse, Message, ToolCall, ToolSpec, Usage

__all__ = ["LLM", "ChatRequest", "ChatResponse", "Message", "ScriptMissing",
           "ScriptedProvider", "ToolCall", "ToolSpec", "Usage"]
