"""Run-scoped credentials: what a step's kernel gets instead of the worker's key.

The worker mints one per claim with its own ingest key: an HMAC over the run id, the lease
epoch and an expiry. The control plane verifies it with the same keys it accepts from
workers, so no round trip is needed, and a kernel that prints its token leaks access to
its own run's events only, for its epoch, until the expiry; never the worker's key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

PREFIX = "aisci-run.v1"
_DOMAIN = b"aisci run token v1\n"


class RunTokenError(ValueError):
    """A run token that is malformed, forged or expired; the message says which."""


@dataclass(frozen=True)
class RunScope:
    run_id: str
    epoch: int
    expires: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _mac(key: str, run_id: str, epoch: int, expires: int) -> str:
    msg = _DOMAIN + f"{run_id}\n{epoch}\n{expires}".encode()
    return _b64(hmac.new(key.encode(), msg, hashlib.sha256).digest())


def mint(key: str, run_id: str, epoch: int, ttl_s: float, now: float | None = None) -> str:
    expires = int((now if now is not None else time.time()) + ttl_s)
    rid = _b64(run_id.encode())
    return f"{PREFIX}.{rid}.{epoch}.{expires}.{_mac(key, run_id, epoch, expires)}"


def is_run_token(value: str) -> bool:
    return value.startswith(PREFIX + ".")


def verify(token: str, keys: list[str], now: float | None = None) -> RunScope:
    """The scope of a valid token; RunTokenError otherwise (checked against every key)."""
    parts = token.split(".")
    if len(parts) != 6 or f"{parts[0]}.{parts[1]}" != PREFIX:
        raise RunTokenError("malformed run token")
    _, _, rid, epoch_s, expires_s, mac = parts
    if not (epoch_s.isascii() and epoch_s.isdigit() and len(epoch_s) < 12
            and expires_s.isascii() and expires_s.isdigit() and len(expires_s) < 12):
        raise RunTokenError("malformed run token")
    try:
        run_id = base64.urlsafe_b64decode(rid + "=" * (-len(rid) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise RunTokenError("malformed run token") from None
    epoch, expires = int(epoch_s), int(expires_s)
    if not any(hmac.compare_digest(mac, _mac(k, run_id, epoch, expires)) for k in keys):
        raise RunTokenError("invalid run token")
    if expires < (now if now is not None else time.time()):
        raise RunTokenError("run token expired")
    return RunScope(run_id, epoch, expires)
