"""Bounded retries for one LLM call, under one deadline.

The SDKs' own retries are off (`max_retries=0`): this one policy holds for every provider.
A `Transient` failure (429, 5xx, a dropped connection, an attempt's timeout) is tried again
after a jittered exponential backoff, or after the server's `Retry-After` when that is
longer; anything else is raised at once. No attempt and no wait reaches past the deadline,
so a call never hangs past its timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from .errors import LLMTimeout, LLMUnavailable, Transient

T = TypeVar("T")
log = logging.getLogger("aisci.llm")
BACKOFF = wait_random_exponential(multiplier=0.5, max=30)  # full jitter: 0..min(30, 0.5·2^n)
MIN_ATTEMPT_S = 0.05  # an attempt with less time left than this is not started


def call_with_retries(attempt: Callable[[float], T], *, timeout_s: float, max_attempts: int,
                      what: str) -> T:
    """`attempt(seconds_left)` until it returns, at most `max_attempts` times, within
    `timeout_s` in all. Raises `LLMTimeout` when the time ran out, `LLMUnavailable` when the
    attempts did, and whatever non-transient error an attempt raised."""
    deadline = time.monotonic() + timeout_s

    def left() -> float:
        return deadline - time.monotonic()

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = getattr(exc, "retry_after_s", None) or 0.0
        return max(after, BACKOFF(state))

    def stop(state: RetryCallState) -> bool:
        if stop_after_attempt(max_attempts)(state):
            return True
        return left() - (state.upcoming_sleep or 0.0) < MIN_ATTEMPT_S

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s: %s; attempt %d of %d in %.1fs", what, exc, state.attempt_number + 1,
                    max_attempts, state.upcoming_sleep)

    retrying = Retrying(retry=retry_if_exception_type(Transient), wait=wait, stop=stop,
                        before_sleep=before_sleep, reraise=True)
    try:
        return retrying(lambda: attempt(max(MIN_ATTEMPT_S, left())))
    except Transient as exc:
        n = retrying.statistics.get("attempt_number", 1)
        if exc.timeout or left() < MIN_ATTEMPT_S:
            raise LLMTimeout(f"{what}: no answer within {timeout_s:g}s ({n} attempt(s); "
                             f"last: {exc}) — raise LLM_TIMEOUT_S for slow models") from None
        raise LLMUnavailable(f"{what}: still failing after {n} attempt(s): {exc}") from None


def retry_after(headers: object) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds; an HTTP date is ignored)."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = get(name)
        if value:
            try:
                return max(0.0, float(value) / scale)
            except ValueError:
                continue
    return None
