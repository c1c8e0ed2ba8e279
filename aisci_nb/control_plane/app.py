"""The FastAPI application: ingest, pages, health."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..db import connect, ensure_indexes
from ..settings import Settings
from ..storage.store import S3Store, open_store
from .artifacts import router as artifacts_router
from .bodylimit import IngestBodyLimit
from .deps import State
from .eventlog import migrate_event_ids
from .hypotheses_api import router as hypotheses_router
from .ingest import router as ingest_router
from .metrics import IngestMetrics
from .pages import router as pages_router
from .projection import Projector
from .runs_api import router as runs_router
from .validations_api import router as validations_router

log = logging.getLogger("aisci.control_plane")


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
    if settings.ingest_allow_unauthenticated:
        log.warning("INGEST_ALLOW_UNAUTHENTICATED is on: events are accepted without "
                    "credentials. Use it only on a trusted private network, during a migration.")
    projector = Projector(db, artifact_uri(settings))
    metrics = IngestMetrics(db)
    app = FastAPI(title="aisci control plane")
    app.state.aisci = State(settings, db, projector, metrics)
    app.state.store = open_store(settings)
    app.add_middleware(IngestBodyLimit)
    app.include_router(ingest_router)
    app.include_router(pages_router)
    app.include_router(artifacts_router)
    app.include_router(runs_router)
    app.include_router(validations_router)
    app.include_router(hypotheses_router)

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        db.command("ping")
        return {"status": "ok"}

    return app


def app_from_env() -> FastAPI:
    """The app of one server process when `aisci control-plane --workers N` runs several."""
    from ..settings import load_settings

    return create_app(load_settings())
