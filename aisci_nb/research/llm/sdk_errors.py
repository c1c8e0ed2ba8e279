"""One translation of the `openai` and `anthropic` SDKs' errors to the layer's own: both
SDKs raise `APIStatusError` (with the HTTP status and response), `APITimeoutError` and
`APIConnectionError`, so the HTTP status decides, the same way for every provider."""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import NoReturn

from .errors import LLMAuthError, LLMBadRequest, Transient
from .retry import retry_after

TRANSIENT_STATUS = frozenset({408, 409, 425, 429})  # and every 5xx (Anthropic's 529 included)


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` without any of `secrets` (an SDK error may quote the key it was given)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def raise_translated(exc: Exception, sdk: ModuleType, *, what: str,
                     secrets: Iterable[str | None] = ()) -> NoReturn:
    """Raise the layer's error for an SDK error: `Transient` (retried), `LLMAuthError`,
    `LLMBadRequest`; anything the SDK did not raise is raised as it is."""
    message = redact(str(exc), secrets)
    if isinstance(exc, sdk.APITimeoutError):
        raise Transient(f"timed out ({message})", timeout=True) from None
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        if status in TRANSIENT_STATUS or status >= 500:
            raise Transient(f"HTTP {status}: {message}", retry_after(exc.response.headers)) \
                from None
        if status in (401, 403):
            raise LLMAuthError(f"{what}: the provider refused the key (HTTP {status}: "
                               f"{message}) — check the API key setting") from None
        raise LLMBadRequest(f"{what}: the provider refused the request (HTTP {status}: "
                            f"{message})") from None
    if isinstance(exc, sdk.APIConnectionError):
        raise Transient(f"connection failed ({message})") from None
    raise exc
