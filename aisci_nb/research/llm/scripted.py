"""The offline scripted provider: replays recorded responses, deterministically.

A script is a JSON file (or a directory of them, read in name order) holding
`{"entries": [...]}`. Each entry answers calls of one research `role`:

    {"role": "code", "match": "Implement the baseline", "model": "scripted",
     "response": {"text": "...", "tool_calls": [{"name": "f", "arguments": {...}}]},
     "usage": {"input_tokens": 812, "output_tokens": 240, "cached_tokens": 0}}

A call is answered by the entries of its role whose `match` (optional) occurs in the
conversation's text; `prompt_sha256` (optional) pins an entry to one exact conversation, and
such an entry always gives the same answer. Otherwise the candidates are replayed in order:
the n-th call that sees the same candidates gets the n-th of them, and the last one repeats
only when it says `"repeat": true`. A call nothing covers raises `ScriptMissing`, naming
the role, the prompt's hash and the script to add it to.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .errors import ScriptMissing
from .types import ChatRequest, ChatResponse, ToolCall, Usage

SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"


def transcript(request: ChatRequest) -> str:
    """The conversation as one text: what `match` is searched in and what is hashed."""
    parts = [f"{m.role}: {m.content}" for m in request.messages]
    return "\n".join(parts)


def prompt_sha256(request: ChatRequest) -> str:
    return hashlib.sha256(transcript(request).encode()).hexdigest()


def resolve_script(name: str) -> Path:
    """A script by name (under the package's `scripts/`) or by path."""
    path = Path(name)
    if path.exists():
        return path
    for candidate in (SCRIPTS_DIR / name, SCRIPTS_DIR / f"{name}.json"):
        if candidate.exists():
            return candidate
    raise ScriptMissing(f"no LLM script {name!r} (looked in {SCRIPTS_DIR} and as a path)")


def load_entries(path: Path) -> list[dict[str, Any]]:
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    entries: list[dict[str, Any]] = []
    for file in files:
        for i, entry in enumerate(json.loads(file.read_text())["entries"]):
            entries.append({**entry, "_where": f"{file.name}#{i}"})
    return entries


class ScriptedProvider:
    name = "scripted"

    def __init__(self, script: str | Path = "default") -> None:
        self.path = resolve_script(str(script))
        self.entries = load_entries(self.path)
        self._seen: Counter[tuple[str, ...]] = Counter()
        self._lock = threading.Lock()

    def complete(self, request: ChatRequest, model: str = "scripted") -> ChatResponse:
        started = time.perf_counter()
        entry = self._pick(request)
        reply = entry.get("response", {})
        calls = tuple(
            ToolCall(call.get("id") or f"call_{i}", call["name"], dict(call.get("arguments", {})))
            for i, call in enumerate(reply.get("tool_calls", []))
        )
        return ChatResponse(
            text=reply.get("text", ""), tool_calls=calls, usage=Usage(**entry.get("usage", {})),
            provider=self.name, model=entry.get("model", model),
            latency_s=time.perf_counter() - started,
        )

    def _pick(self, request: ChatRequest) -> dict[str, Any]:
        text = transcript(request)
        digest = prompt_sha256(request)
        mine = [e for e in self.entries if e["role"] == request.role]
        for entry in mine:
            if entry.get("prompt_sha256") == digest:
                return entry
        candidates = [e for e in mine if "prompt_sha256" not in e
                      and (not e.get("match") or e["match"] in text)]
        if candidates:
            key = tuple(e["_where"] for e in candidates)
            with self._lock:
                n = self._seen[key]
                self._seen[key] += 1
            if n < len(candidates):
                return candidates[n]
            if candidates[-1].get("repeat"):
                return candidates[-1]
        raise ScriptMissing(
            f"the LLM script {self.path} has no response for role {request.role!r} "
            f"(prompt_sha256 {digest}); add an entry with \"role\": {request.role!r} and a "
            f"\"match\" taken from the prompt to {self.path}"
        )
