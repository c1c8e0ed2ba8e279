"""`/login` and `/logout`: the server-rendered sign-in the web UI builds on.

The sign-in form is protected against login CSRF by a double-submit cookie; once signed in,
the session (HttpOnly, SameSite=Strict, Secure behind TLS) carries its own CSRF token, which
pages put in their forms.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from . import accounts
from .auth import SESSION_COOKIE, UserDep, _single_user, new_csrf, same_origin
from .deps import StateDep
from .pages import templates

router = APIRouter()
LOGIN_CSRF_COOKIE = "aisci_login_csrf"


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never `//evil.example` or `https://...`."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _secure(request: Request, state) -> bool:
    if state.settings.cookie_secure is not None:
        return state.settings.cookie_secure
    return request.url.scheme == "https" or state.settings.control_plane_url.startswith("https")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, state: StateDep, next: str = "/",
               error: str | None = None) -> Response:
    token = new_csrf()
    resp = templates.TemplateResponse(request, "login.html", {
        "next": _safe_next(next), "csrf": token, "error": error,
        "single_user": state.settings.aisci_ui_token is not None,
        "unauthenticated": state.settings.ingest_allow_unauthenticated,
    }, status_code=401 if error else 200)
    resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                    secure=_secure(request, state), path="/login")
    return resp


@router.post("/login")
async def login(request: Request, state: StateDep, csrf_token: Annotated[str, Form()],
                username: Annotated[str, Form(max_length=64)] = "",
                password: Annotated[str, Form(max_length=1024)] = "",
                token: Annotated[str, Form(max_length=1024)] = "",
                next: Annotated[str, Form(max_length=2000)] = "/") -> Response:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not same_origin(request) or not cookie or not hmac.compare_digest(
            cookie.encode(), csrf_token.encode()):
        raise HTTPException(403, "sign-in form expired or posted from another site; reload it")
    user = None
    if token:
        user = _single_user(state, token) or await run_in_threadpool(
            accounts.user_for_token, state.db, token)
    elif username:
        user = await run_in_threadpool(accounts.authenticate, state.db, username, password)
    if user is None:
        await run_in_threadpool(accounts.audit, state.db, username or "?", "login_failed")
        return login_page(request, state, next=next, error="Wrong name, password or token.")
    sid, _ = await run_in_threadpool(accounts.open_session, state.db, user,
                                     state.settings.session_ttl_s)
    await run_in_threadpool(accounts.audit, state.db, user, "login")
    resp = RedirectResponse(_safe_next(next), status_code=303)
    resp.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="strict",
                    secure=_secure(request, state), max_age=int(state.settings.session_ttl_s))
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return resp


@router.post("/logout")
async def logout(request: Request, state: StateDep, user: UserDep) -> Response:
    sid = request.cookies.get(SESSION_COOKIE)
    if sid:
        await run_in_threadpool(accounts.close_session, state.db, sid)
    await run_in_threadpool(accounts.audit, state.db, user, "logout")
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE)
    return resp
