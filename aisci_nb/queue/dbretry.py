"""The one retry policy for the worker's MongoDB calls that can meet an election or restart.

Every queue write is conditional (fenced by the lease epoch), so doing it again after a lost
reply is harmless, and a read is harmless by nature: both are retried while MongoDB is
unreachable, for up to `DB_RETRY_S`, with exponential backoff.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pymongo.errors import ConnectionFailure
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

T = TypeVar("T")
DB_RETRY_S = 300


def with_db_retry(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)`, retried on `ConnectionFailure` (a restart, an election)."""
    retrying = Retrying(retry=retry_if_exception_type(ConnectionFailure), reraise=True,
                        wait=wait_exponential(0.2, max=5), stop=stop_after_delay(DB_RETRY_S))
    return retrying(fn, *args, **kwargs)
