"""FastAPI dependencies: the database, the projector, metrics, and ingest authentication."""

from __future__ import annotations

import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from ..contract import runtoken
from ..contract.runtoken import RunScope
from ..contract.signing import sign
from ..settings import Settings
from .metrics import IngestMetrics
from .projection import Projector

MAX_SKEW_S = 300
_STAMP = re.compile(r"^[0-9]{1,12}$")  # ASCII only: "²".isdigit() is True, int("²") fails
_SIGNATURE = re.compile(r"^v2=[0-9a-f]{64}$")


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


@dataclass(frozen=True)
class IngestPrincipal:
    """Who sent events: a worker key, a run-scoped kernel token, or nobody (migration)."""

    kind: str  # "key", "run" or "anonymous"
    scope: RunScope | None = None


INGEST_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/json-seq",
                          "application/cloudevents+json", "application/cloudevents-batch+json"})


async def require_ingest_auth(
    request: Request,
    state: StateDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> IngestPrincipal:
    """A worker's bearer key, a run-scoped token, or an HMAC-SHA256 signature (method, path,
    timestamp and body digest) with a worker key.

    Several keys are accepted so they can be rotated. A signature older or newer than five
    minutes is refused as expired, and one seen before as replayed. With
    `INGEST_REQUIRE_HMAC`, a worker key is only accepted as a signature.
    """
    settings = state.settings
    keys = [k.get_secret_value() for k in settings.ingest_api_keys]
    signature = request.headers.get("x-aisci-signature")
    principal: IngestPrincipal
    if signature is not None and keys:
        await _check_signature(request, state, keys, signature)
        principal = IngestPrincipal("key")
    elif creds is not None and runtoken.is_run_token(creds.credentials) and keys:
        try:
            principal = IngestPrincipal("run", runtoken.verify(creds.credentials, keys))
        except runtoken.RunTokenError as exc:
            raise _refuse(str(exc)) from None
    elif creds is not None and keys:
        offered = creds.credentials.encode()
        if not any(secrets.compare_digest(offered, k.encode()) for k in keys):
            raise _refuse("invalid API key")
        if settings.ingest_require_hmac:
            raise _refuse("this control plane requires HMAC-signed requests "
                          "(AISCI_INGEST_AUTH=hmac on the worker)", "HMAC")
        principal = IngestPrincipal("key")
    elif settings.ingest_allow_unauthenticated:
        # The migration switch opens the ingest only, and only to event content types: a
        # cross-site form post (urlencoded, multipart, text/plain) cannot reach it.
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in INGEST_TYPES and "ce-specversion" not in request.headers:
            raise HTTPException(415, "unauthenticated ingest takes only application/x-ndjson "
                                     "or CloudEvents content types")
        principal = IngestPrincipal("anonymous")
    elif not keys:
        raise _refuse("ingest is closed: no INGEST_API_KEYS are configured")
    else:
        raise _refuse("missing credentials: send Authorization: Bearer <key> or an "
                      "X-Aisci-Signature with X-Aisci-Timestamp")
    request.state.ingest_principal = principal
    return principal


async def _check_signature(request: Request, state: State, keys: list[str],
                           signature: str) -> None:
    stamp = request.headers.get("x-aisci-timestamp", "")
    if not _STAMP.match(stamp):
        raise _refuse("missing or malformed X-Aisci-Timestamp (unix seconds)", "HMAC")
    if not _SIGNATURE.match(signature):
        raise _refuse("malformed X-Aisci-Signature (v2=<64 hex digits>)", "HMAC")
    skew = abs(time.time() - int(stamp))
    if skew > MAX_SKEW_S:
        raise _refuse(f"signature expired: timestamp is {skew:.0f}s off (limit {MAX_SKEW_S}s)",
                      "HMAC")
    body = await request.body()
    method, path = request.method, request.url.path
    if not any(hmac.compare_digest(signature.encode(errors="replace"),
                                   sign(k, stamp, body, method, path).encode())
               for k in keys):
        raise _refuse("invalid signature", "HMAC")
    try:
        state.db.ingest_signatures.insert_one({"_id": signature, "at": datetime.now(UTC)})
    except DuplicateKeyError:
        raise _refuse("replayed signature: this request was already accepted", "HMAC") from None
