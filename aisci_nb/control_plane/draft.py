"""Drafting a hypothesis from pasted notes or a conversation: the LLM (role `ideation`)
turns free text into a title and a hypothesis, which the person edits before submitting.

Nothing is stored: the draft only fills the form. Offline, the scripted provider answers
(`scripts/default/draft.json`)."""

from __future__ import annotations

import json
import re
from typing import Any

from ..research.llm import LLM, Message
from ..research.llm.routing import build_llm
from ..settings import Settings

MAX_NOTES = 50_000
PROMPT = ("Draft a research hypothesis from the notes below. Answer with JSON only: "
          '{"title": "<= 12 words", "hypothesis": "two to four sentences: what is tested, '
          'how, and what result would support it"}.')
_FENCED = re.compile(r"```(?:json)?\s*(\{.*\})\s*```", re.DOTALL)


class DraftError(ValueError):
    """The model's answer holds no usable draft."""


def parse_draft(text: str) -> dict[str, str]:
    found = _FENCED.search(text)
    try:
        value: Any = json.loads(found.group(1) if found else text)
    except ValueError:
        raise DraftError("the model did not answer with JSON") from None
    title = value.get("title") if isinstance(value, dict) else None
    hypothesis = value.get("hypothesis") if isinstance(value, dict) else None
    if not isinstance(title, str) or not title.strip() or not isinstance(hypothesis, str) \
            or not hypothesis.strip():
        raise DraftError("the model's draft lacks a title or a hypothesis")
    return {"title": title.strip()[:300], "hypothesis": hypothesis.strip()[:20_000]}


def draft(settings: Settings, notes: str, llm: LLM | None = None) -> dict[str, Any]:
    """{title, hypothesis, model}; DraftError when the answer holds no draft (the provider's
    own errors pass through)."""
    llm = llm or build_llm(settings)  # role `ideation`'s model; scripted without a key
    answer = llm.chat("ideation", [Message("system", PROMPT),
                                   Message("user", notes[:MAX_NOTES])], json_output=True)
    return {**parse_draft(answer.text), "model": answer.model}
