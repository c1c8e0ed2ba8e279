"""What every server-rendered page shares: the Jinja templates, their filters, and the
signed-in user and CSRF token in each page's context. The pages themselves are in
`routers/`, one module per resource, each next to its JSON twin."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from fastapi import Request
from fastapi.templating import Jinja2Templates

from ..contract.catalog import label
from ..contract.lifecycle import RunStatus

EVENT_DATA_CHARS = 2000
STATIC_DIR = Path(__file__).parent / "static"


def auth_context(request: Request) -> dict[str, Any]:
    """The signed-in user and the session's CSRF token, for the nav and every form."""
    user = getattr(request.state, "user", None)
    return {"user": user, "csrf_token": getattr(request.state, "csrf", None),
            "can_operate": bool(user and user.can("operator")),
            "statuses": [s.value for s in RunStatus],
            "unauthenticated": request.app.state.aisci.settings.ingest_allow_unauthenticated,
            "path": request.url.path}


def num(value: Any, spec: str = "%.4g") -> str:
    """A number formatted, or empty for anything else (a missing metric is not an error)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return spec % value


def short_json(value: Any, limit: int = EVENT_DATA_CHARS) -> str:
    try:
        text = orjson.dumps(value, default=str).decode()
    except TypeError:
        text = str(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def hhmmss(value: Any) -> str:
    return value.strftime("%H:%M:%S.%f")[:-3] if hasattr(value, "strftime") else ""


def when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else ""


def iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else ""


def to_json(value: Any) -> str:
    """Data for the page's scripts, in a `data-` attribute (no inline script)."""
    return orjson.dumps(value, default=str).decode()


templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"),
                            context_processors=[auth_context])
templates.env.filters.update(event_label=label, num=num, short_json=short_json,
                             hhmmss=hhmmss, when=when, iso=iso, to_json=to_json)
