"""FastAPI dependencies: the database, the projector, metrics, and ingest authentication."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from ..events.emitter import sign
from ..settings import Settings
from .metrics import IngestMetrics
from .projection import Projector

MAX_SKEW_S = 300


@dataclass
class State:
    settings: Settings
    db: Database
    projector: Projector
    metrics: IngestMetrics


def get_state(request: Request) -> State:
    return request.app.state.aisci


StateDep = Annotated[State, Depends(get_state)]
_bearer = HTTPBearer(auto_error=False)


def _refuse(reason: str, scheme: str = "Bearer") -> HTTPException:
    return HTTPException(401, reason, headers={"WWW-Authenticate": scheme})


async def require_ingest_auth(
    request: Request,
    state: StateDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """A bearer key, or an HMAC-SHA256 signature over `timestamp.body` with a key.

    Several keys are accepted so they can be rotated. A signature older or newer than five
    minutes is refused as expired, and one seen before as replayed.
    """
    settings = state.settings
    if settings.ingest_allow_unauthenticated:
        return
    keys = [k.get_secret_value() for k in settings.ingest_api_keys]
    if not keys:
        raise _refuse("ingest is closed: no INGEST_API_KEYS are configured")
    signature = request.headers.get("x-aisci-signature")
    if signature is not None:
        await _check_signature(request, state, keys, signature)
        return
    if creds is None:
        raise _refuse("missing credentials: send Authorization: Bearer <key> or an "
                      "X-Aisci-Signature with X-Aisci-Timestamp")
    offered = creds.credentials.encode()
    if not any(secrets.compare_digest(offered, k.encode()) for k in keys):
        raise _refuse("invalid API key")


async def _check_signature(request: Request, state: State, keys: list[str],
                           signature: str) -> None:
    stamp = request.headers.get("x-aisci-timestamp", "")
    if not stamp.isdigit():
        raise _refuse("missing or malformed X-Aisci-Timestamp (unix seconds)", "HMAC")
    skew = abs(time.time() - int(stamp))
    if skew > MAX_SKEW_S:
        raise _refuse(f"signature expired: timestamp is {skew:.0f}s off (limit {MAX_SKEW_S}s)",
                      "HMAC")
    body = await request.body()
    if not any(hmac.compare_digest(signature, sign(k, stamp, body)) for k in keys):
        raise _refuse("invalid signature", "HMAC")
    try:
        state.db.ingest_signatures.insert_one({"_id": signature, "at": datetime.now(UTC)})
    except DuplicateKeyError:
        raise _refuse("replayed signature: this request was already accepted", "HMAC") from None
