"""Artifact links for the UI: one URL per artifact that redirects to a presigned GET.

The link needs a signed-in person; the presigned URL it redirects to is the credential of
`/artifacts/{key}` (local store), which serves the file as a sandboxed attachment.

S3 presigns with the store's credentials; the local directory store presigns URLs to
`/artifacts/{key}` here, signed with a key only this process holds, and serves them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, RedirectResponse

from ..storage.store import ArtifactStore, LocalStore, guess_type
from .auth import UserDep
from .deps import StateDep
from .security import ARTIFACT_CSP

router = APIRouter()
LINK_EXPIRES_S = 900


def get_store(request: Request) -> ArtifactStore:
    return request.app.state.store


@router.get("/api/runs/{run_id}/artifacts/{key:path}")
def artifact_link(run_id: str, key: str, request: Request, state: StateDep,
                  user: UserDep) -> RedirectResponse:
    if state.db.artifacts.find_one({"runId": run_id, "key": key}, {"_id": 1}) is None:
        raise HTTPException(404, f"run {run_id} has no artifact {key}")
    url = get_store(request).presigned_url(key, expires_s=LINK_EXPIRES_S)
    return RedirectResponse(url, status_code=307)


@router.get("/artifacts/{key:path}")
def local_artifact(key: str, request: Request, expires: Annotated[int, Query()],
                   signature: Annotated[str, Query()]) -> FileResponse:
    store = get_store(request)
    if not isinstance(store, LocalStore):
        raise HTTPException(404, "artifacts are served by the S3 store")
    try:
        path = store.verify(key, expires, signature)
    except ValueError:
        path = None
    if path is None:
        raise HTTPException(403, "the link is invalid or has expired")
    # Served from this origin, so never rendered here: a download, in a sandbox, not sniffed.
    return FileResponse(path, media_type=guess_type(path), filename=path.name,
                        content_disposition_type="attachment",
                        headers={"content-security-policy": ARTIFACT_CSP,
                                 "x-content-type-options": "nosniff"})
