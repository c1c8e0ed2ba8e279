"""FastAPI dependencies: the database, the projector, and ingest authentication."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pymongo.database import Database

from ..settings import Settings
from .projection import Projector


@dataclass
class State:
    settings: Settings
    db: Database
    projector: Projector


def get_state(request: Request) -> State:
    return request.app.state.aisci


StateDep = Annotated[State, Depends(get_state)]
_bearer = HTTPBearer(auto_error=False)


def require_ingest_auth(
    state: StateDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """A bearer key from INGEST_API_KEYS; several are accepted so keys can be rotated."""
    settings = state.settings
    if settings.ingest_allow_unauthenticated:
        return
    if not settings.ingest_api_keys:
        raise HTTPException(401, "ingest is closed: no INGEST_API_KEYS are configured")
    if creds is None:
        raise HTTPException(401, "missing credentials: send Authorization: Bearer <key>",
                            headers={"WWW-Authenticate": "Bearer"})
    offered = creds.credentials.encode()
    if not any(secrets.compare_digest(offered, k.get_secret_value().encode())
               for k in settings.ingest_api_keys):
        raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
