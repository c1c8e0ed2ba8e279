"""Registering artifacts from a notebook (sha256, multipart, failure event) and presigned
links for the UI from both stores."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

import aisci_nb
from aisci_nb.contract.runinfo import API_KEY_ENV
from aisci_nb.control_plane.app import create_app
from aisci_nb.db import new_id
from aisci_nb.notebook.outputs import outputs_manifest
from aisci_nb.settings import Settings
from aisci_nb.storage.store import LocalStore, S3Store, StorageError

from ..conftest import API_KEY, UI_AUTH, UI_TOKEN, Stack, wait_until

MiB = 1024 * 1024


@pytest.fixture
def ctx(stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(API_KEY_ENV, API_KEY)
    context = aisci_nb.init({"run_id": new_id(), "events_url": stack.control_plane_url,
                             "event_source": "test://artifacts"}, stage="Stage_1")
    yield context
    context.close()


def test_large_artifact_is_uploaded_in_parts(stack: Stack, ctx, tmp_path: Path) -> None:
    env = stack.env
    ctx.store = S3Store(env["MINIO_ENDPOINT"], env["MINIO_ACCESS_KEY"], env["MINIO_SECRET_KEY"],
                        env["MINIO_BUCKET"], part_size=5 * MiB)
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(os.urandom(12 * MiB))
    stored = ctx.register_artifact(path, kind="checkpoint", name="weights")
    assert stored.key == f"runs/{ctx.run_id}/artifacts/Stage_1/checkpoint.pt"
    assert stored.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    stat = ctx.store.client.stat_object(ctx.store.bucket, stored.key)
    assert stat.etag.endswith("-3")  # three parts: 5 + 5 + 2 MiB
    assert ctx.store.get_bytes(stored.key) == path.read_bytes()
    ctx.events.emitter.flush(timeout_s=30)
    doc = wait_until(lambda: stack.db.artifacts.find_one({"runId": ctx.run_id}),
                     what="artifact projection")
    assert (doc["key"], doc["sha256"], doc["size"], doc["kind"]) == (
        stored.key, stored.sha256, 12 * MiB, "checkpoint")
    assert json.loads(outputs_manifest(tmp_path, "Stage_1").read_text()) == {
        "weights": stored.key}


def test_failed_upload_emits_artifact_failed(stack: Stack, ctx, tmp_path: Path) -> None:
    env = stack.env
    ctx.store = S3Store(env["MINIO_ENDPOINT"], env["MINIO_ACCESS_KEY"], env["MINIO_SECRET_KEY"],
                        "no-such-bucket")
    path = tmp_path / "table.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(StorageError, match=r"could not store table\.csv"):
        ctx.register_artifact(path, kind="table")
    failed = wait_until(lambda: stack.db.events.find_one(
        {"runId": ctx.run_id, "type": "ai.artifact.failed"}), what="ai.artifact.failed")
    assert failed["data"]["key"] == f"runs/{ctx.run_id}/artifacts/Stage_1/table.csv"
    assert failed["data"]["code"] == "STORAGE_ERROR"
    assert not outputs_manifest(tmp_path, "Stage_1").exists()


def test_debug_context_keeps_artifacts_local(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ctx = aisci_nb.init(None, stage="Stage_1")  # no run info: JupyterLab, nbval, aisci debug
    (tmp_path / "fig.png").write_bytes(b"\x89PNG...")
    stored = ctx.register_artifact("fig.png", kind="figure")
    ctx.close()
    assert stored.uri.startswith((tmp_path / "aisci-debug-artifacts").as_uri())
    assert stored.content_type == "image/png"
    events = [json.loads(line) for line in (tmp_path / "aisci-debug-events.ndjson").open()]
    assert [e["type"] for e in events] == ["ai.artifact.registered"]


def test_s3_presigned_link(stack: Stack, tmp_path: Path) -> None:
    store = stack.store()
    path = tmp_path / "report.txt"
    path.write_text("hello")
    run_id = new_id()
    stored = store.put_file(f"runs/{run_id}/report.txt", path)
    assert httpx.get(store.presigned_url(stored.key, expires_s=60)).text == "hello"
    stack.db.artifacts.insert_one({"runId": run_id, "key": stored.key})
    link = httpx.get(f"{stack.control_plane_url}/api/runs/{run_id}/artifacts/{stored.key}",
                     follow_redirects=True, headers=UI_AUTH)
    assert link.status_code == 200 and link.text == "hello"
    assert link.headers["content-disposition"] == "attachment"  # never rendered by S3
    missing = httpx.get(f"{stack.control_plane_url}/api/runs/{run_id}/artifacts/nope.txt",
                        headers=UI_AUTH)
    assert missing.status_code == 404


def test_local_store_presigned_link(stack: Stack, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    settings = Settings(_env_file=None, mongodb_url=stack.env["MONGODB_URL"],
                        artifacts_dir=root, aisci_ui_token=UI_TOKEN)
    client = TestClient(create_app(settings), headers=UI_AUTH)
    run_id = new_id()
    key = f"runs/{run_id}/plots/loss.svg"
    (tmp_path / "loss.svg").write_text("<svg/>")
    LocalStore(root).put_file(key, tmp_path / "loss.svg")
    stack.db.artifacts.insert_one({"runId": run_id, "key": key})
    link = client.get(f"/api/runs/{run_id}/artifacts/{key}", follow_redirects=False)
    assert link.status_code == 307
    location = link.headers["location"]
    assert location.startswith(f"/artifacts/{key}?expires=")
    served = client.get(location)
    assert served.status_code == 200 and served.text == "<svg/>"
    assert served.headers["content-type"].startswith("image/svg+xml")
    # From the control plane's origin, an SVG (or HTML) would run script there: it is a
    # download, sandboxed, never sniffed.
    assert served.headers["content-disposition"].startswith("attachment")
    assert served.headers["content-security-policy"].startswith("sandbox")
    assert served.headers["x-content-type-options"] == "nosniff"
    assert client.get(location.replace("signature=", "signature=0")).status_code == 403
    assert client.get(location.replace("plots/loss", "plots/other")).status_code == 403
    assert client.get(f"/artifacts/{key}?expires=1&signature=x").status_code == 403
