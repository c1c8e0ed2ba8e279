"""One scrubber for everything that leaves a step: notebooks, events, logs, text artifacts.

Code written by an LLM prints, logs and raises with whatever it finds; a credential in the
kernel's reach can end up in any output. Each configured secret value, and its common
encodings (base64 at any alignment, URL-encoding, hex, JSON escaping), is replaced by a
marker before the output is stored or sent.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MARKER = "[REDACTED]"
MIN_SECRET = 6  # shorter values would redact ordinary text
MIN_ENCODED = 8
# Environment variables whose values are secrets wherever they are set (the kernel scrubs
# its own events with them).
SECRET_ENV = ("AISCI_API_KEY", "AISCI_RUN_TOKEN", "MINIO_SECRET_KEY", "INGEST_API_KEYS",
              "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AISCI_UI_TOKEN", "METRICS_TOKEN",
              "HF_TOKEN", "AWS_SECRET_ACCESS_KEY")


def _b64_variants(raw: bytes) -> set[str]:
    """The base64 characters that depend only on `raw`, for each of the 3 alignments."""
    out: set[str] = set()
    for k in range(3):
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            text = enc(b"\0" * k + raw).decode()
            start = -(-8 * k // 6)
            end = (8 * (k + len(raw))) // 6
            part = text[start:end]
            if len(part) >= MIN_ENCODED:
                out.add(part)
    return out


def variants(secret: str) -> set[str]:
    raw = secret.encode()
    found = {secret, quote(secret, safe=""), quote_plus(secret), raw.hex(), raw.hex().upper(),
             json.dumps(secret)[1:-1]}
    found |= _b64_variants(raw)
    return {v for v in found if len(v) >= MIN_SECRET}


class Scrubber:
    """Replaces every known secret (and its encodings) with MARKER."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        """Also scrub these (a run token minted later); safe while other threads scrub."""
        values = set(self._values)
        for s in secrets:
            if s and len(s) >= MIN_SECRET:
                values |= variants(s)
        if values != self._values:
            self._values = values
            self._pattern = re.compile("|".join(
                re.escape(v) for v in sorted(values, key=len, reverse=True)))

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, value: str) -> str:
        return self._pattern.sub(MARKER, value) if self._pattern else value

    def bytes(self, value: bytes) -> bytes:
        if not self._pattern:
            return value
        return self.text(value.decode("utf-8", errors="surrogateescape")).encode(
            "utf-8", errors="surrogateescape")

    def obj(self, value: Any) -> Any:
        """A JSON-like value with every string (keys too) scrubbed."""
        if not self._pattern:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.obj(k): self.obj(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.obj(v) for v in value]
        return value


def from_env(environ: dict[str, str] | None = None) -> Scrubber:
    env = os.environ if environ is None else environ
    values: list[str] = []
    for name in SECRET_ENV:
        raw = env.get(name)
        if raw:
            values += [v.strip() for v in raw.split(",")] if name == "INGEST_API_KEYS" else [raw]
    return Scrubber(values)


class LogScrubber(logging.Filter):
    """A handler filter: the formatted message and traceback, scrubbed."""

    def __init__(self, scrubber: Scrubber) -> None:
        super().__init__()
        self.scrubber = scrubber

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.scrubber:
            return True
        record.msg = self.scrubber.text(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.scrubber.text(logging.Formatter().formatException(
                record.exc_info))
            record.exc_info = None
        return True


def install_log_scrubber(scrubber: Scrubber, logger: logging.Logger | None = None) -> None:
    """Scrub what every handler of `logger` (default: the root) writes."""
    for handler in (logger or logging.getLogger()).handlers:
        handler.addFilter(LogScrubber(scrubber))
