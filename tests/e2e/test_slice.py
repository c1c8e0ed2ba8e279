"""The walking skeleton end to end: MongoDB → worker → papermill notebook → S3 + control plane."""

from __future__ import annotations

import hashlib
import json

import httpx
import nbformat

from aisci_nb.contract.idea import example_idea
from aisci_nb.queue.submit import submit_hypothesis
from aisci_nb.worker.telemetry import gpu_name

from ..conftest import API_KEY, BASELINE_ENV, BASELINE_WORKER, S3_SECRET, UI_AUTH, Stack, wait_until


def run_events(stack: Stack, run_id: str) -> list[dict]:
    return list(stack.db.events.find({"runId": run_id}).sort("seq", 1))


def test_run_travels_end_to_end(stack: Stack) -> None:
    sub = submit_hypothesis(stack.db, title="two moons", idea=example_idea())
    proc = stack.run_worker("--mode", "experiment", "--max-runs", "1",
                            extra_env={**BASELINE_ENV, "RUNPOD_POD_ID": "pod-e2e"},
                            script=BASELINE_WORKER)
    assert proc.returncode == 0, proc.stderr[-3000:]

    run = stack.db.runs.find_one({"_id": sub.run_id})
    assert run["status"] == "COMPLETED"
    assert run["claimedBy"] == "pod-e2e"
    assert run["attempt"] == 1
    assert run["steps"]["Stage_1"]["status"] == "COMPLETED"
    key = f"runs/{sub.run_id}/notebooks/Stage_1.ipynb"
    assert run["steps"]["Stage_1"]["outputs"] == {"notebook": key}

    # Events from the worker and the kernel, one per-run sequence without gaps or repeats.
    run = wait_until(lambda: (r := stack.db.runs.find_one({"_id": sub.run_id}))
                     and r.get("metrics") and r, what="projection")
    events = run_events(stack, sub.run_id)
    types = [e["type"] for e in events]
    for expected in ("ai.run.enqueued", "ai.run.started", "ai.run.stage_started",
                     "ai.run.stage_progress", "ai.run.stage_metric", "ai.run.stage_completed",
                     "ai.artifact.registered", "ai.run.completed"):
        assert expected in types, expected
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(events) + 1))
    kernel_sources = {e["source"] for e in events if e["type"] == "ai.run.stage_metric"}
    assert kernel_sources == {"pod://pod-e2e"}
    assert types.index("ai.run.started") < types.index("ai.run.stage_started")
    started = next(e for e in events if e["type"] == "ai.run.started")
    assert started["data"].get("gpu") == gpu_name()  # None on a CPU-only machine
    assert types.index("ai.run.stage_completed") < types.index("ai.run.completed")

    # The projection: status, stage, sequence, metric from real training, artifact.
    assert run["lastEventSeq"] == seqs[-1]
    assert run["currentStage"]["name"] == "Stage_1"
    assert run["currentStage"]["progress"] == 1.0
    assert run["currentStage"]["maxIterations"] == example_idea()["experiment"]["epochs"]
    assert run["metrics"]["Stage_1"]["val_accuracy"] > 0.75
    stage = stack.db.stages.find_one({"runId": sub.run_id, "name": "Stage_1"})
    assert stage["status"] == "COMPLETED" and stage["index"] == 1
    artifact = stack.db.artifacts.find_one({"runId": sub.run_id, "key": key})
    assert artifact["kind"] == "notebook"
    assert artifact["uri"] == f"s3://aisci-test/{key}"

    # The executed notebook in S3: the bytes the event describes, with the injected run id.
    body = stack.store().get_bytes(key)
    assert hashlib.sha256(body).hexdigest() == artifact["sha256"]
    assert len(body) == artifact["size"]
    nb = nbformat.reads(body.decode(), as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    assert f'aisci = {{"run_id": "{sub.run_id}"' in injected[0].source

    # Secrets reach neither the notebook nor the events.
    everything = body.decode() + json.dumps([e["data"] for e in events], default=str)
    assert API_KEY not in everything
    assert S3_SECRET not in everything


def test_failing_notebook_reports_and_uploads(stack: Stack) -> None:
    idea = example_idea()
    idea["experiment"] = {**idea["experiment"], "learning_rate": -1.0}  # refused in the kernel
    # Written past `aisci submit` (which would refuse it), as an older client might have.
    sub = submit_hypothesis(stack.db, title="bad lr", idea=idea)
    proc = stack.run_worker("--max-runs", "1", extra_env=BASELINE_ENV,
                            script=BASELINE_WORKER)
    assert proc.returncode == 0, proc.stderr[-3000:]

    run = stack.db.runs.find_one({"_id": sub.run_id})
    assert run["status"] == "FAILED"
    assert run["errorType"] == "ValidationError"
    assert "learning_rate" in run["errorMessage"]
    assert "ValidationError" in run["errorTraceback"]
    assert "\x1b[" not in run["errorTraceback"]
    assert run["steps"]["Stage_1"]["status"] == "FAILED"

    failed = wait_until(lambda: stack.db.events.find_one(
        {"runId": sub.run_id, "type": "ai.run.failed"}), what="ai.run.failed")
    assert failed["data"]["code"] == "ValidationError"
    assert failed["data"]["retryable"] is False
    assert failed["data"]["stage"] == "Stage_1"
    assert "learning_rate" in failed["data"]["traceback"]

    key = f"runs/{sub.run_id}/notebooks/Stage_1.ipynb"
    nb = nbformat.reads(stack.store().get_bytes(key).decode(), as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors and errors[0]["ename"] == "ValidationError"
    assert wait_until(lambda: stack.db.artifacts.find_one({"runId": sub.run_id, "key": key}),
                      what="artifact projection")
    assert stack.db.stages.find_one({"runId": sub.run_id, "name": "Stage_1"})["status"] == "FAILED"


def test_pages_show_counts_and_run(stack: Stack) -> None:
    sub = submit_hypothesis(stack.db, title="page check", idea=example_idea())
    base = stack.control_plane_url
    index = httpx.get(f"{base}/", headers=UI_AUTH).text
    assert 'data-status="QUEUED">1<' in index
    assert "page check" in index
    page = httpx.get(f"{base}/runs/{sub.run_id}", headers=UI_AUTH)
    assert page.status_code == 200
    assert "QUEUED" in page.text and "Run enqueued" in page.text
    assert httpx.get(f"{base}/runs/nope", headers=UI_AUTH).status_code == 404
    # The ingest stays closed to callers without a key.
    assert httpx.post(f"{base}/api/ingest/events", content=b"").status_code == 401
    assert httpx.post(f"{base}/api/ingest/events", content=b"",
                      headers={"authorization": f"Bearer {API_KEY}x"}).status_code == 401
