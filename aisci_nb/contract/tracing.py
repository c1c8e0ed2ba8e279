"""W3C Trace Context: one run is one trace, the worker and each step's kernel its spans."""

from __future__ import annotations

import re
import secrets

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def new_trace_id() -> str:
    return secrets.token_hex(16)


def traceparent(trace_id: str) -> str:
    """A `traceparent` header value for a new span of the trace."""
    return f"00-{trace_id}-{secrets.token_hex(8)}-01"


def trace_id_of(value: str | None) -> str | None:
    match = _TRACEPARENT.match(value or "")
    return match.group(1) if match else None
