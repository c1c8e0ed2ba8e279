"""Log levels as authors write them, and Python logging forwarded as `ai.run.log` events."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

# The catalogue's levels (`ai.run.log`), and what authors and `logging` call them.
_LEVELS = {"debug": "debug", "info": "info", "warn": "warn", "warning": "warn",
           "error": "error", "critical": "error", "fatal": "error", "exception": "error"}


def event_level(level: str | int) -> str:
    """`"warning"`, `"WARN"`, `logging.WARNING`... → the catalogue's `"warn"`; ValueError
    naming the accepted spellings otherwise."""
    if isinstance(level, int):
        return event_level(logging.getLevelName(level) if level >= logging.DEBUG else "debug")
    found = _LEVELS.get(level.lower())
    if found is None:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(_LEVELS)}")
    return found


class RunLogHandler(logging.Handler):
    """A `logging.Handler` that sends each record as an `ai.run.log` event.

    Records of aisci's own loggers are skipped: the emitter logs its delivery retries, and
    forwarding those as events would feed the queue it is failing to drain.
    """

    def __init__(self, log: Callable[..., Any], level: int = logging.INFO) -> None:
        super().__init__(level)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("aisci_nb"):
            return
        try:
            kv = {"logger": record.name}
            if record.exc_info:
                kv["exception"] = logging.Formatter().formatException(record.exc_info)
            self._log(record.getMessage(), level=record.levelno, **kv)
        except Exception:
            self.handleError(record)
