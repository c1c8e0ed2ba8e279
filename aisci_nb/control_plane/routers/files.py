"""A run's files shown inside its page: figures and the PDF inline, notebooks as HTML.

Served from this origin, so each answer is locked down: images and PDFs cannot script,
notebook HTML is sandboxed (no script at all), and only our own pages may frame them."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from ...storage.store import StorageError
from ..auth import UserDep
from ..deps import StateDep
from ..notebook_html import render
from ..readmodel.run import artifact_view

router = APIRouter(tags=["runs"])
INLINE_MAX = 50 * 1024 * 1024
FRAMED_HEADERS = {"x-frame-options": "SAMEORIGIN", "x-content-type-options": "nosniff",
                  "cache-control": "private, max-age=300"}
MEDIA_CSP = "default-src 'none'; img-src 'self'; frame-ancestors 'self'"
NOTEBOOK_CSP = ("sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                "font-src data:; frame-ancestors 'self'")


def _artifact(state, request: Request, run_id: str, key: str) -> tuple[dict, bytes]:
    doc = state.db.artifacts.find_one({"runId": run_id, "key": key})
    if doc is None:
        raise HTTPException(404, f"run {run_id} has no artifact {key}")
    if (doc.get("size") or 0) > INLINE_MAX:
        raise HTTPException(413, "too large to show inline: download it")
    try:
        return doc, request.app.state.store.get_bytes(key)
    except (StorageError, OSError, KeyError) as exc:
        raise HTTPException(502, f"the store could not give {key}: {exc}") from None


@router.get("/api/runs/{run_id}/inline/{key:path}")
async def inline(run_id: str, key: str, request: Request, state: StateDep,
                 user: UserDep) -> Response:
    """A figure (PNG/JPEG/GIF/WebP) or the PDF, for the run page to show inline."""
    doc, data = await run_in_threadpool(_artifact, state, request, run_id, key)
    view = artifact_view(doc)
    if view not in ("figure", "pdf"):
        raise HTTPException(415, "only figures and PDFs are shown inline: download it")
    media = "application/pdf" if view == "pdf" else doc.get("contentType") or "image/png"
    return Response(data, media_type=media, headers={
        **FRAMED_HEADERS, "content-security-policy": MEDIA_CSP,
        "content-disposition": "inline"})


@router.get("/api/runs/{run_id}/notebook/{key:path}", response_class=HTMLResponse)
async def notebook(run_id: str, key: str, request: Request, state: StateDep,
                   user: UserDep) -> Response:
    """An executed notebook rendered as HTML (sandboxed), its failing cell highlighted."""
    doc, data = await run_in_threadpool(_artifact, state, request, run_id, key)
    if artifact_view(doc) != "notebook":
        raise HTTPException(415, f"{key} is not a notebook")
    try:
        html, failed = await run_in_threadpool(render, data)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return HTMLResponse(html, headers={
        **FRAMED_HEADERS, "content-security-policy": NOTEBOOK_CSP,
        "x-aisci-failed-cell": "" if failed is None else str(failed)})


NODE_TEXT_CHARS = 20_000


def _journal_node(state, request: Request, run_id: str, node_id: str) -> dict | None:
    for doc in state.db.artifacts.find({"runId": run_id, "key": {"$regex": r"journal\.json$"}},
                                       {"key": 1, "sha256": 1}).limit(20):
        try:
            journal = _journal(request.app.state.store, doc["key"], doc.get("sha256") or "")
        except (StorageError, OSError, ValueError, KeyError):
            continue
        for node in journal.get("nodes") or []:
            if isinstance(node, dict) and node.get("id") == node_id:
                return {k: (v[:NODE_TEXT_CHARS] if isinstance(v, str) else v)
                        for k, v in node.items()} | {"journal": doc["key"]}
    return None


_journals: dict[tuple[str, str], dict] = {}


def _journal(store, key: str, sha: str) -> dict:
    """A stage's journal (cached by content hash: an artifact never changes under its hash)."""
    import json

    if (key, sha) not in _journals:
        if len(_journals) > 64:
            _journals.clear()
        _journals[(key, sha)] = json.loads(store.get_bytes(key))
    return _journals[(key, sha)]


@router.get("/api/runs/{run_id}/nodes/{node_id}")
async def node(run_id: str, node_id: str, request: Request, state: StateDep,
               user: UserDep) -> dict:
    """A search node: plan, code, output and metric from its stage's journal when stored,
    else what its events said."""
    found = await run_in_threadpool(_journal_node, state, request, run_id, node_id)
    if found is not None:
        return found
    events = await run_in_threadpool(lambda: list(state.db.events.find(
        {"runId": run_id, "data.node_id": node_id}, {"data": 1}).sort("seq", 1).limit(50)))
    if not events:
        raise HTTPException(404, f"run {run_id} has no node {node_id}")
    merged: dict = {}
    for e in events:
        merged.update(e.get("data") or {})
    return {"id": node_id, **merged, "journal": None}
