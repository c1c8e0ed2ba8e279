"""The FastAPI application: ingest, pages, health; who may see what is in `auth`."""

from __future__ import annotations

import gc
import logging

from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ..db import connect, ensure_indexes
from ..settings import Settings
from ..storage.store import S3Store, open_store
from . import accounts
from .artifacts import router as artifacts_router
from .auth import SignInRequired, UserDep, login_redirect, wants_html
from .bodylimit import IngestBodyLimit
from .deps import State
from .eventlog import migrate_event_ids
from .hypotheses_api import router as hypotheses_router
from .ingest import router as ingest_router
from .live import Broadcaster
from .login import router as login_router
from .metrics import IngestMetrics
from .pages import STATIC_DIR
from .projection import Projector
from .routers import files, hypotheses, live, overview, runs, stats, validations
from .runs_api import router as runs_router
from .security import SecurityHeaders
from .validations_api import router as validations_router

log = logging.getLogger("aisci.control_plane")

# Routes anyone may call, each with its own reason; tests/test_auth.py refuses any other
# route that answers a signed-out request.
PUBLIC_ROUTES = {
    ("GET", "/healthz"): "liveness for load balancers: says ok and nothing else",
    ("GET", "/login"): "the sign-in form",
    ("POST", "/login"): "signing in (login-CSRF protected)",
    ("GET", "/metrics"): "its own token (METRICS_TOKEN) or a person's API token",
    ("GET", "/artifacts/{key:path}"): "the local store's presigned links: the signature is "
                                      "the credential",
    ("GET", "/static"): "the pages' own CSS and JavaScript (no data)",
    ("POST", "/api/ingest/event"): "worker keys, run tokens or HMAC (deps.require_ingest_auth)",
    ("POST", "/api/ingest/events"): "worker keys, run tokens or HMAC (deps.require_ingest_auth)",
}


def artifact_uri(settings: Settings):
    """Where an artifact key lives, for the `artifacts.uri` field."""
    store = open_store(settings)
    if isinstance(store, S3Store):
        return lambda key: f"s3://{settings.minio_bucket}/{key}"
    return lambda key: (store.root / key).as_uri()  # type: ignore[attr-defined]


def create_app(settings: Settings) -> FastAPI:
    db = connect(settings)
    ensure_indexes(db)
    moved = migrate_event_ids(db)
    if moved:
        log.info("moved %d events to the (source, id) identity", moved)
    accounts.ensure_indexes(db)
    if settings.ingest_allow_unauthenticated:
        log.warning("INGEST_ALLOW_UNAUTHENTICATED is on: the ingest (only) accepts events "
                    "without credentials. Use it only on a trusted private network, during a "
                    "migration; pages and every other call still need a sign-in.")
    if not settings.aisci_ui_token and db.users.estimated_document_count() == 0:
        log.warning("nobody can sign in: add a user (aisci user add NAME --role operator) or "
                    "set AISCI_UI_TOKEN")
    projector = Projector(db, artifact_uri(settings))
    metrics = IngestMetrics(db)
    app = FastAPI(title="aisci control plane", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.aisci = State(settings, db, projector, metrics)
    app.state.store = open_store(settings)
    app.add_middleware(IngestBodyLimit)
    app.state.live = Broadcaster(db)
    app.add_middleware(SecurityHeaders, hsts=settings.control_plane_url.startswith("https"))
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_hosts or ["*"])
    app.include_router(ingest_router)
    app.include_router(login_router)
    for module in (overview, runs, files, hypotheses, validations, stats, live):
        app.include_router(module.router)
    app.include_router(artifacts_router)
    app.include_router(runs_router)
    app.include_router(validations_router)
    app.include_router(hypotheses_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(SignInRequired)
    def sign_in(request: Request, exc: SignInRequired) -> Response:
        if wants_html(request):
            return RedirectResponse(login_redirect(request), status_code=303)
        return JSONResponse({"detail": exc.reason}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        db.command("ping")
        return {"status": "ok"}

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(user: UserDep) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def docs(user: UserDep) -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="aisci control plane")

    return app


def app_from_env() -> FastAPI:
    """The app of one server process (`aisci control-plane`, once per `--workers` process)."""
    from ..settings import load_settings

    app = create_app(load_settings())
    freeze_startup_heap()
    return app


def freeze_startup_heap() -> None:
    """Keep the garbage collector off what the server holds for its whole life.

    A batch keeps thousands of objects alive while it is parsed and stored, so they reach
    the oldest generation, and each full collection then also walks the ~200,000 objects
    of the imported modules and the app. Frozen, those are skipped (as Instagram does for
    its Django servers); cycles among them were never garbage anyway.
    """
    gc.collect()
    gc.freeze()
