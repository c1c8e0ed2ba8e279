"""The offline LLM: every role answered by the scripted provider from the `LLM_SCRIPT`
setting (a script name under `scripts/` or a path; default `default`). Research code
takes an `LLM`; until routing per role from settings exists, steps build this one."""

from __future__ import annotations

import os

from .client import LLM
from .scripted import ScriptedProvider


def scripted_llm(script: str | None = None) -> LLM:
    name = script or os.environ.get("LLM_SCRIPT") or "default"
    return LLM({"*": (ScriptedProvider(name), "scripted")})
