"""Who is asking: people (session cookie, personal API token, the single-user token) and
what they may do; the FastAPI dependencies every route builds on.

    @router.post("/api/things")
    def create(user: OperatorDep): ...          # operators only, CSRF-checked for cookies

A signed-out request gets 401 (API) or a redirect to `/login` (a page). A cookie-signed
state-changing request must carry the session's CSRF token (`X-CSRF-Token` header or a
`csrf_token` form field) and must not come from another origin; bearer calls are not
cookie-based and need no CSRF token.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from . import accounts
from .accounts import Role, User
from .deps import State, get_state

SESSION_COOKIE = "aisci_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SINGLE_USER = "owner"


class SignInRequired(Exception):
    """Raised by the dependencies; answered 401, or a redirect to /login for a page."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _single_user(state: State, token: str) -> User | None:
    configured = state.settings.aisci_ui_token
    if configured and hmac.compare_digest(token.encode(),
                                          configured.get_secret_value().encode()):
        return User(SINGLE_USER, Role.OPERATOR, "single-user")
    return None


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def _check_csrf(request: Request, expected: str) -> None:
    if not same_origin(request):
        raise HTTPException(403, "cross-site request refused")
    offered = request.headers.get(CSRF_HEADER)
    if offered is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        offered = (await request.form()).get(CSRF_FIELD)
    if not isinstance(offered, str) or not hmac.compare_digest(offered.encode(),
                                                                expected.encode()):
        raise HTTPException(403, "missing or wrong CSRF token")


async def current_user(request: Request, state: Annotated[State, Depends(get_state)]) -> User:
    """The signed-in person; SignInRequired otherwise."""
    token = _bearer(request)
    if token is not None:
        user = _single_user(state, token) or await run_in_threadpool(
            accounts.user_for_token, state.db, token)
        if user is None:
            raise SignInRequired("invalid API token")
        request.state.user = user
        return user
    sid = request.cookies.get(SESSION_COOKIE)
    found = await run_in_threadpool(accounts.session, state.db, sid) if sid else None
    if found is None:
        raise SignInRequired("sign in first (session cookie or Authorization: Bearer token)")
    user, csrf = found
    request.state.csrf = csrf
    if request.method not in SAFE_METHODS:
        await _check_csrf(request, csrf)
    request.state.user = user
    return user


UserDep = Annotated[User, Depends(current_user)]


def require_role(role: Role | str) -> Callable:
    """A dependency admitting signed-in users of at least `role` (viewer < operator)."""

    async def check(user: UserDep) -> User:
        if not user.can(role):
            raise HTTPException(403, f"{user.name} is a {user.role.value}; this needs {role}")
        return user

    return check


OperatorDep = Annotated[User, Depends(require_role(Role.OPERATOR))]


def login_redirect(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?next={quote(target, safe='')}"


def wants_html(request: Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


def metrics_allowed(request: Request, state: State) -> bool:
    """`/metrics` takes its own token (for Prometheus), or any signed-in person's bearer."""
    token = _bearer(request)
    configured = state.settings.metrics_token
    if token and configured and hmac.compare_digest(
            token.encode(), configured.get_secret_value().encode()):
        return True
    return bool(token and (_single_user(state, token) or accounts.user_for_token(state.db, token)))


def new_csrf() -> str:
    return secrets.token_urlsafe(32)
