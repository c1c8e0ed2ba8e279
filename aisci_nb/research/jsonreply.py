"""Models wrap JSON in prose or code fences; this takes the object out, or says why not."""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def parse_json_reply(text: str) -> Any:
    """The first JSON object in `text` (fenced or bare); ValueError naming what was seen."""
    for candidate in [*_FENCE.findall(text), text]:
        start = candidate.find("{")
        if start < 0:
            continue
        try:
            obj, _ = json.JSONDecoder().raw_decode(candidate[start:])
        except json.JSONDecodeError:
            continue
        return obj
    raise ValueError(f"no JSON object in the model's reply: {text[:200]!r}")
