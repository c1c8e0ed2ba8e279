"""The LLM layer: one interface (`LLM.chat`), providers behind it (OpenAI, Anthropic, any
OpenAI-compatible server, the offline scripted one), routed per research role from the
settings, every call counted and held to the run's budget. Research code imports from here
only; notebooks call `llm_for(ctx)`."""

from .client import LLM
from .errors import (
    BudgetExceeded,
    LLMAuthError,
    LLMBadRequest,
    LLMConfigError,
    LLMError,
    LLMTimeout,
    LLMUnavailable,
    ScriptMissing,
)
from .notebook import llm_for
from .scripted import ScriptedProvider
from .types import ChatRequest, ChatResponse, Message, ToolCall, ToolSpec, Usage

__all__ = ["LLM", "BudgetExceeded", "ChatRequest", "ChatResponse", "LLMAuthError",
           "LLMBadRequest", "LLMConfigError", "LLMError", "LLMTimeout", "LLMUnavailable",
           "Message", "ScriptMissing", "ScriptedProvider", "ToolCall", "ToolSpec", "Usage",
           "llm_for"]
