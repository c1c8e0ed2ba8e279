"""Which provider and model answer each research role, from the settings.

A role's setting (`LLM_MODEL_<ROLE>`, else `LLM_MODEL`) is `provider:model` or a bare model
name: gpt-*, chatgpt-*, o1/o3/o4* → openai; claude-* → anthropic; `openai-compatible:` or
`local:` → the server at `LLM_BASE_URL`; `scripted:` → the offline scripted provider. A role
whose provider has no key (or every role, with `LLM_OFFLINE=true`) is answered by the
scripted provider (`LLM_SCRIPT`), still priced as the model it stands in for.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from ...settings import LLM_ROLES, LLMSettings
from .client import LLM, Guard, Observer
from .errors import LLMConfigError
from .scripted import ScriptedProvider
from .types import Provider

log = logging.getLogger("aisci.llm")
ROLES = LLM_ROLES
PREFIXES = {"openai": "openai", "anthropic": "anthropic", "openai-compatible": "compatible",
            "local": "compatible", "scripted": "scripted"}
KEY_SETTING = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
_OPENAI_NAME = re.compile(r"^(gpt-|chatgpt-|o1|o3|o4)", re.IGNORECASE)


@dataclass(frozen=True)
class Route:
    role: str
    kind: str  # openai, anthropic, compatible, scripted
    model: str
    why_scripted: str | None = None  # set when the scripted provider stands in

    def describe(self) -> str:
        name = "openai-compatible" if self.kind == "compatible" else self.kind
        text = f"{name}:{self.model}"
        return f"{text} ({self.why_scripted})" if self.why_scripted else text


def parse_model(text: str, base_url: str | None = None) -> tuple[str, str]:
    """(provider kind, model) of a model setting; `LLMConfigError` names what is wrong."""
    text = text.strip()
    head, sep, tail = text.partition(":")
    if sep and head.lower() in PREFIXES:
        kind, model = PREFIXES[head.lower()], tail.strip()
        if not model and kind != "scripted":
            raise LLMConfigError(f"model setting {text!r}: no model after {head}:")
    elif _OPENAI_NAME.match(text):
        kind, model = "openai", text
    elif text.lower().startswith("claude"):
        kind, model = "anthropic", text
    elif text.lower() == "scripted":
        kind, model = "scripted", "scripted"
    elif base_url:
        kind, model = "compatible", text
    else:
        raise LLMConfigError(
            f"model setting {text!r}: cannot tell its provider — write provider:model "
            "(openai:, anthropic:, openai-compatible: with LLM_BASE_URL, scripted:)")
    if kind == "compatible" and not base_url:
        raise LLMConfigError(f"model setting {text!r} needs LLM_BASE_URL (the server's URL)")
    return kind, model or "scripted"


def _key(settings: LLMSettings, kind: str) -> str | None:
    secret = getattr(settings, f"{kind}_api_key", None)
    value = secret.get_secret_value().strip() if secret else ""
    return value or None


def route(settings: LLMSettings, role: str) -> Route:
    kind, model = parse_model(settings.model_for(role), settings.llm_base_url)
    if kind == "scripted":
        return Route(role, kind, model)
    if settings.llm_offline:
        return Route(role, "scripted", model, "LLM_OFFLINE is set")
    if kind in KEY_SETTING and _key(settings, kind) is None:
        return Route(role, "scripted", model, f"no {KEY_SETTING[kind]}")
    return Route(role, kind, model)


def routes(settings: LLMSettings) -> dict[str, Route]:
    return {role: route(settings, role) for role in ROLES}


_told: set[str] = set()


def _tell_once(message: str) -> bool:
    if message in _told:
        return False
    _told.add(message)
    log.warning(message)
    return True


def build_llm(settings: LLMSettings, *, observer: Observer | None = None,
              guard: Guard | None = None, on_notice=None) -> LLM:
    """The `LLM` for these settings: one provider object per kind, shared by its roles, and
    one scripted provider (its replay order is per process) for the roles it stands in for."""
    made: dict[str, Provider] = {}
    timeout, attempts = settings.llm_timeout_s, settings.llm_max_attempts

    def provider(kind: str) -> Provider:
        if kind not in made:
            if kind == "openai":
                from .openai_provider import OpenAIProvider

                made[kind] = OpenAIProvider(_key(settings, "openai"), timeout_s=timeout,
                                            max_attempts=attempts)
            elif kind == "compatible":
                from .openai_provider import OpenAIProvider

                made[kind] = OpenAIProvider(_key(settings, "llm"),
                                            base_url=settings.llm_base_url,
                                            timeout_s=timeout, max_attempts=attempts)
            elif kind == "anthropic":
                from .anthropic_provider import AnthropicProvider

                made[kind] = AnthropicProvider(_key(settings, "anthropic"), timeout_s=timeout,
                                               max_attempts=attempts)
            else:
                made[kind] = ScriptedProvider(settings.llm_script)
        return made[kind]

    table: dict[str, tuple[Provider, str]] = {}
    stand_ins = []
    for role, r in routes(settings).items():
        table[role] = (provider(r.kind), r.model)
        if r.why_scripted:
            stand_ins.append(f"{role} ({r.why_scripted})")
    default = route(settings, "*")
    table["*"] = (provider(default.kind), default.model)
    if stand_ins:
        message = (f"LLM: the offline scripted provider (script {settings.llm_script!r}) "
                   f"answers {', '.join(stand_ins)}")
        if _tell_once(message) and on_notice is not None:
            on_notice(message)
    return LLM(table, observer=observer, guard=guard)
