"""Ideation on the real services: submitted with a hypothesis, served by an ideation worker
running `ideation.ipynb` (scripted model, recorded literature), results on the hypothesis,
the run queued after it when asked; failures and a rate-limited search."""

from __future__ import annotations

import subprocess
import sys

import httpx
import nbformat

from aisci_nb.ops import debug
from aisci_nb.queue.submit import submit_for_ideation
from aisci_nb.research.ideation import FIELDS
from aisci_nb.settings import WorkerMode
from aisci_nb.storage.store import open_store
from aisci_nb.worker.loop import Worker

from ..conftest import API_KEY, BASELINE_WORKER, ROOT, UI_AUTH, Stack, wait_until
from ..unit.research.ideation.test_literature import FakeS2

AUTH = UI_AUTH  # an operator: creating hypotheses is a person's action
WORKER_AUTH = {"authorization": f"Bearer {API_KEY}"}
FORM = {"title": "MLP width on noisy two-moons",
        "idea": "Wider one-hidden-layer MLPs generalise better until label noise dominates.",
        "topic": "# Workshop: small models, careful science\nCheap, well-controlled studies.",
        "numIdeas": 2, "reflections": 3, "autoRun": True}


def ideation_worker(stack: Stack, **settings: object) -> Worker:
    s = stack.settings.model_copy(update={"worker_mode": WorkerMode.IDEATION, **settings})
    return Worker(s, stack.db, open_store(stack.settings), steps=())


def test_ideation_end_to_end_then_the_first_idea_runs(stack: Stack) -> None:
    base = stack.control_plane_url
    assert httpx.post(f"{base}/api/hypotheses", json=FORM).status_code == 401
    # a worker's key is no person's: it cannot create work
    assert httpx.post(f"{base}/api/hypotheses", headers=WORKER_AUTH,
                      json=FORM).status_code in (401, 403)
    bad = httpx.post(f"{base}/api/hypotheses", headers=AUTH, json={**FORM, "reflections": 0})
    assert bad.status_code == 422 and "reflections" in bad.text
    no_idea = httpx.post(f"{base}/api/hypotheses", headers=AUTH, json={"title": "t"})
    assert no_idea.status_code == 422 and "idea" in no_idea.text
    assert stack.db.hypotheses.count_documents({}) == 0  # refused input wrote nothing

    resp = httpx.post(f"{base}/api/hypotheses", headers=AUTH, json=FORM)
    assert resp.status_code == 201, resp.text
    hyp_id, request_id = resp.json()["hypothesis_id"], resp.json()["request_id"]
    hyp = stack.db.hypotheses.find_one({"_id": hyp_id})
    assert hyp["ideation"]["status"] == "QUEUED" and hyp["ideation"]["requestId"] == request_id
    assert hyp["topic"].startswith("# Workshop") and hyp["ideaJson"] is None
    assert stack.db.ideation_requests.find_one({"_id": request_id})["autoRun"] is True
    assert stack.db.runs.count_documents({}) == 0  # no run until ideation completes

    proc = stack.run_worker("--mode", "ideation", "--max-runs", "1",
                            extra_env={"RUNPOD_POD_ID": "pod-ideation"})
    assert proc.returncode == 0, proc.stderr[-3000:]

    request = stack.db.ideation_requests.find_one({"_id": request_id})
    assert request["status"] == "COMPLETED", request.get("error")
    step = request["steps"]["Ideation"]
    key = f"ideation/{request_id}/Ideation.ipynb"
    assert step["status"] == "COMPLETED" and step["outputs"]["notebook"] == key
    assert step["outputs"]["ideas"] == f"ideation/{request_id}/ideas.json"
    print(f"\nideation step wall time (offline): {step['duration_s']:.2f}s")
    hyp = stack.db.hypotheses.find_one({"_id": hyp_id})
    ideation = hyp["ideation"]
    assert ideation["status"] == "COMPLETED"
    assert ideation["startedAt"] <= ideation["completedAt"]
    ideas = ideation["ideas"]
    assert len(ideas) == 2 and all(tuple(i) == FIELDS for i in ideas)
    assert hyp["ideaJson"] == ideas[0] and ideation["rounds"] == [2, 2]
    assert ideation["usage"]["calls"] == 4 and ideation["usage"]["cost_usd"] > 0
    print(f"rounds {ideation['rounds']}; usage {ideation['usage']}")
    print(f"first idea: {ideas[0]}")

    # Events: the step's cells and progress under the request's id, the LLM calls counted,
    # a warning-free search, and ai.ideation.generated stored and projected.
    def events() -> list[str]:
        return [e["type"] for e in stack.db.events.find({"runId": request_id})]

    types = wait_until(lambda: "ai.run.stage_completed" in (t := events()) and t,
                       what="the notebook's events")
    for expected in ("ai.run.cell_started", "ai.run.cell_completed", "ai.run.stage_progress",
                     "ai.run.stage_started", "ai.llm.usage", "ai.artifact.registered"):
        assert expected in types, expected
    assert types.count("ai.llm.usage") == 4
    generated = stack.db.events.find_one({"type": "ai.ideation.generated"})
    assert generated["data"] == {"hypothesis_id": hyp_id, "request_id": request_id,
                                 "count": 2, "top_k": 1}
    projected = wait_until(lambda: (h := stack.db.hypotheses.find_one({"_id": hyp_id}))
                           and h["ideation"].get("count") == 2 and h, what="projection")
    assert projected["ideation"]["status"] == "COMPLETED"

    # The executed notebook in S3, with the hypothesis injected and the ideas shown.
    nb = nbformat.reads(stack.store().get_bytes(key).decode(), as_version=4)
    source = "\n".join(c.source for c in nb.cells)
    assert FORM["title"] in source
    assert any(ideas[0]["Title"] in str(c.get("outputs")) for c in nb.cells)
    api = httpx.get(f"{base}/api/hypotheses/{hyp_id}", headers=AUTH).json()
    assert api["ideation"]["status"] == "COMPLETED" and api["ideaJson"] == ideas[0]

    # autoRun: the first idea's run was queued with the result, and an experiment worker
    # (the tiny test pipeline: the four stages' tree search is not this test's subject)
    # carries it.
    run_id = ideation["runId"]
    run = stack.db.runs.find_one({"_id": run_id})
    assert run["status"] == "QUEUED" and run["hypothesisId"] == hyp_id
    assert stack.db.events.find_one({"runId": run_id, "type": "ai.run.enqueued"})
    proc = stack.run_worker("--mode", "experiment", "--max-runs", "1",
                            extra_env={"PYTHONPATH": str(ROOT)}, script=BASELINE_WORKER)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert stack.db.runs.find_one({"_id": run_id})["status"] == "COMPLETED"


def test_cli_submits_for_ideation(stack: Stack) -> None:
    env = {**stack.env, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "aisci_nb.ops.cli", "submit", "--title", "cli ideation",
         "--ideation", "--idea", "Width helps until noise dominates", "--reflections", "2",
         "--ideas", "1"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    request = stack.db.ideation_requests.find_one({})
    assert f"ideation {request['_id']} QUEUED" in out.stdout
    assert (request["reflections"], request["maxNumGenerations"], request["autoRun"]) == (
        2, 1, False)
    hyp = stack.db.hypotheses.find_one({"_id": request["hypothesisId"]})
    assert hyp["idea"] == "Width helps until noise dominates"
    assert hyp["ideation"]["status"] == "QUEUED"
    refused = subprocess.run(
        [sys.executable, "-m", "aisci_nb.ops.cli", "submit", "--title", "x", "--ideation",
         "--ideas", "0"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "ideas: between 1 and" in refused.stderr
    assert stack.db.hypotheses.count_documents({}) == 1


def test_a_model_answering_garbage_fails_with_the_reason_and_can_be_debugged(
        stack: Stack, tmp_path) -> None:
    done = submit_for_ideation(stack.db, title="garbage", idea_text="Anything at all.",
                               reflections=2, auto_run=True)
    worker = ideation_worker(stack, llm_script="ideation_garbage")
    assert worker.run_forever(max_runs=1) == 1
    request = stack.db.ideation_requests.find_one({"_id": done.request_id})
    assert request["status"] == "FAILED"
    assert "no valid idea after 2 round(s)" in request["error"]
    assert "not JSON" in request["error"] and request["errorType"] == "IdeationFailed"
    hyp = stack.db.hypotheses.find_one({"_id": done.hypothesis_id})
    assert hyp["ideation"]["status"] == "FAILED" and hyp["ideation"]["failedAt"]
    assert "no valid idea after 2 round(s)" in hyp["ideation"]["error"]
    assert hyp.get("ideaJson") is None and stack.db.runs.count_documents({}) == 0
    step = request["steps"]["Ideation"]
    assert step["status"] == "FAILED" and step["error"]["cellId"]

    ws = debug.prepare(stack.db, stack.store(), done.request_id, root=tmp_path / "debug")
    assert ws.step == "Ideation" and ws.cell_id == step["error"]["cellId"]
    nb = nbformat.read(ws.notebook, as_version=4)
    injected = nb.metadata["papermill"]["parameters"]
    assert injected["aisci"]["events_url"] is None  # reruns report to the debug sink
    assert injected["hypothesis"]["title"] == "garbage"


def test_a_rate_limited_search_is_retried_then_skipped_with_a_warning(stack: Stack) -> None:
    s2 = FakeS2()
    s2.thread.start()
    try:
        s2.answers = [429] * 100
        done = submit_for_ideation(stack.db, title="rate limited", idea_text="Width helps.")
        worker = ideation_worker(stack, literature_source="live", s2_api_url=s2.url,
                                 s2_max_attempts=3, s2_backoff_s=0.01)
        assert worker.run_forever(max_runs=1) == 1
    finally:
        s2.server.shutdown()
        s2.server.server_close()
    assert len(s2.seen) == 3  # retried, then given up on (and not asked again)
    request = stack.db.ideation_requests.find_one({"_id": done.request_id})
    assert request["status"] == "COMPLETED", request.get("error")
    warning = wait_until(lambda: stack.db.events.find_one(
        {"runId": done.request_id, "type": "ai.run.log", "data.level": "warn",
         "data.message": {"$regex": "literature search skipped"}}), what="the warning")
    assert "HTTP 429" in warning["data"]["message"]
