"""What the ideation notebook reads from its kernel's environment (never its parameters:
the API key must not land in the executed notebook)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ...settings import LLMSettings
from ..llm.routing import route
from .literature import DEFAULT_S2_URL, RecordedLiterature, Search, SemanticScholar

ROLE = "ideation"


class IdeationSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    literature_search: bool = Field(True, description="false: ideation searches nothing")
    literature_source: Literal["auto", "recorded", "live"] = Field(
        "auto", description="auto: recorded results when the model is scripted, else live")
    s2_api_url: str = DEFAULT_S2_URL
    s2_api_key: SecretStr | None = None
    s2_max_attempts: int = Field(4, ge=1)
    s2_backoff_s: float = Field(2.0, ge=0)
    s2_min_interval_s: float | None = Field(None, ge=0)


def scripted(llm_settings: LLMSettings | None = None) -> bool:
    """Whether the offline scripted provider answers the ideation role (no key, or
    LLM_OFFLINE): then the literature is recorded too, so ideation needs no network."""
    return route(llm_settings or LLMSettings(), ROLE).kind == "scripted"


def literature(settings: IdeationSettings, *, offline: bool) -> Search | None:
    """The search tool's backend, or None when literature search is switched off."""
    if not settings.literature_search:
        return None
    source = settings.literature_source
    if source == "recorded" or (source == "auto" and offline):
        return RecordedLiterature()
    key = settings.s2_api_key.get_secret_value() if settings.s2_api_key else None
    return SemanticScholar(settings.s2_api_url, key, max_attempts=settings.s2_max_attempts,
                           backoff_s=settings.s2_backoff_s,
                           min_interval_s=settings.s2_min_interval_s)
