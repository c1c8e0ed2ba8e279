"""Plots → Writeup → Review on the real worker and services, after four stages that hand
on fixture outputs (the tree search's contract); the run ends AWAITING_HUMAN; a re-run from
Writeup reuses the earlier steps; a person's verdict through the API and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from aisci_nb.contract.idea import example_idea
from aisci_nb.queue import claims
from aisci_nb.queue.submit import submit_hypothesis
from aisci_nb.worker.loop import Worker
from aisci_nb.worker.pipelines import PAPER_STEPS, PIPELINE_STEP_NAMES, Step

from ..conftest import API_KEY, UI_AUTH, Stack, wait_until

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
FIXTURE_STAGES = tuple(Step(f"Stage_{i}", "fixture_stage.ipynb", "fixture stage outputs")
                       for i in range(1, 5))
PIPELINE = FIXTURE_STAGES + tuple(replace(s, notebook=f"../../notebooks/{s.notebook}")
                                  for s in PAPER_STEPS)
AUTH = UI_AUTH  # reruns and verdicts are an operator's
WORKER_AUTH = {"Authorization": f"Bearer {API_KEY}"}


def run_once(stack: Stack) -> None:
    cfg = stack.settings.model_copy(update={"max_attempts": 1})
    worker = Worker(cfg, stack.db, stack.store(), notebooks_dir=NOTEBOOKS, steps=PIPELINE)
    assert worker.run_forever(max_runs=1, exit_when_idle=True) == 1


def executions(run: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in run.get("stepHistory", []):
        counts[entry["step"]] = counts.get(entry["step"], 0) + 1
    return counts


@pytest.mark.slow
def test_paper_review_then_rerun_then_a_human_verdict(stack: Stack) -> None:
    run_id = submit_hypothesis(stack.db, title="paper", idea=example_idea()).run_id
    run_once(stack)
    run = stack.db.runs.find_one({"_id": run_id})
    assert run["status"] == "AWAITING_HUMAN", run.get("errorMessage")
    assert "completedAt" not in run or run["completedAt"] is None
    assert all(run["steps"][s.name]["status"] == "COMPLETED" for s in PIPELINE)
    assert {"figures", "training_curves"} <= set(run["steps"]["Plots"]["outputs"])
    assert {"paper", "latex"} <= set(run["steps"]["Writeup"]["outputs"])

    # the read model, from the events
    auto = wait_until(lambda: stack.db.validations.find_one({"runId": run_id, "kind": "auto"}),
                      what="the auto validation")
    assert auto["verdict"] == "pass" and auto["rubric"]["Overall"] == 5.0
    kinds = wait_until(lambda: {a["kind"] for a in stack.db.artifacts.find({"runId": run_id})}
                       >= {"figure", "paper", "latex", "review"} or None, what="artifacts")
    assert kinds
    types = [e["type"] for e in stack.db.events.find({"runId": run_id}).sort("seq", 1)]
    for t in ("ai.paper.started", "ai.paper.generated", "ai.validation.auto_started",
              "ai.validation.auto_completed"):
        assert t in types, t
    moves = [e["data"]["to"] for e in stack.db.events.find(
        {"runId": run_id, "type": "ai.run.status_changed"}).sort("seq", 1)]
    assert moves[-2:] == ["AUTO_VALIDATING", "AWAITING_HUMAN"]
    assert "ai.run.completed" not in types
    pdf_key = run["steps"]["Writeup"]["outputs"]["paper"]
    assert stack.store().get_bytes(pdf_key)[:5] == b"%PDF-"

    # a human verdict needs credentials, and the run must await one
    url = f"{stack.control_plane_url}/api"
    assert httpx.post(f"{url}/validations/{run_id}/human", json={"verdict": "pass"}
                      ).status_code == 401
    # ... a person's: a worker's key decides nothing
    assert httpx.post(f"{url}/validations/{run_id}/human", json={"verdict": "pass"},
                      headers=WORKER_AUTH).status_code in (401, 403)
    # re-run from the writeup: earlier steps are reused, not executed again
    assert httpx.post(f"{url}/runs/{run_id}/rerun", json={"from": "Nowhere"},
                      headers=AUTH).status_code == 422
    resp = httpx.post(f"{url}/runs/{run_id}/rerun", json={"from": "writeup",
                      "reason": "tighter abstract"}, headers=AUTH)
    assert resp.status_code == 202, resp.text
    assert resp.json()["steps"] == ["Writeup", "Review"]
    queued = stack.db.runs.find_one({"_id": run_id})
    assert queued["status"] == "QUEUED" and "Writeup" not in queued["steps"]
    assert queued["rerun"]["from"] == "Writeup" and queued["leaseEpoch"] > run["leaseEpoch"]
    assert httpx.post(f"{url}/validations/{run_id}/human", json={"verdict": "pass"},
                      headers=AUTH).status_code == 409
    run_once(stack)
    again = stack.db.runs.find_one({"_id": run_id})
    assert again["status"] == "AWAITING_HUMAN"
    assert executions(again) == {**{s.name: 1 for s in FIXTURE_STAGES}, "Plots": 1,
                                 "Writeup": 2, "Review": 2}
    assert again["steps"]["Writeup"]["outputs"]["paper"] == pdf_key  # same key, new paper
    assert again["steps"]["Writeup"]["startedAt"] > run["steps"]["Review"]["completedAt"]

    resp = httpx.post(f"{url}/validations/{run_id}/human", headers=AUTH,
                      json={"verdict": "pass", "notes": "figures check out", "by": "Ada"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "HUMAN_VALIDATED"
    done = stack.db.runs.find_one({"_id": run_id})
    assert done["status"] == "HUMAN_VALIDATED" and done["humanValidation"]["verdict"] == "pass"
    human = stack.db.validations.find_one({"runId": run_id, "kind": "human"})
    assert human["verdict"] == "pass" and human["notes"] == "figures check out"
    assert human["createdBy"] == "Ada (owner)" and API_KEY not in human["createdBy"]
    assert stack.db.audit.find_one({"action": "validate", "target": run_id})["user"] == "owner"
    assert human["createdAt"] is not None
    assert httpx.post(f"{url}/validations/{run_id}/human", json={"verdict": "fail"},
                      headers=AUTH).status_code == 409
    assert httpx.post(f"{url}/validations/nope/human", json={"verdict": "fail"},
                      headers=AUTH).status_code == 404


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aisci_nb.ops.cli", *args],
                          env={**os.environ, **stack.env}, cwd=stack.tmp, capture_output=True,
                          text=True, timeout=60)


def awaiting_run(stack: Stack) -> str:
    doc = claims.new_run_document("hyp-1")
    doc.update(status="AWAITING_HUMAN", steps={
        name: {"status": "COMPLETED"} for name in PIPELINE_STEP_NAMES})
    stack.db.runs.insert_one(doc)
    return doc["_id"]


def test_cli_fail_verdict_keeps_the_reason_and_refuses_a_second(stack: Stack) -> None:
    run_id = awaiting_run(stack)
    done = cli(stack, "validate", run_id, "--fail", "--notes", "the ablation is missing a seed")
    assert done.returncode == 0, done.stderr
    assert f"run {run_id} FAILED" in done.stdout
    run = stack.db.runs.find_one({"_id": run_id})
    assert run["status"] == "FAILED" and run["errorType"] == "HUMAN_REJECTED"
    assert "the ablation is missing a seed" in run["errorMessage"]
    human = stack.db.validations.find_one({"runId": run_id, "kind": "human"})
    assert human["verdict"] == "fail" and "@" in human["createdBy"]
    again = cli(stack, "validate", run_id, "--pass")
    assert again.returncode == 1 and "is FAILED, not AWAITING_HUMAN" in again.stderr
    assert stack.db.validations.count_documents({"runId": run_id}) == 1
    # a rejected paper can be rewritten
    rerun = cli(stack, "rerun", run_id, "--from", "Writeup")
    assert rerun.returncode == 0, rerun.stderr
    run = stack.db.runs.find_one({"_id": run_id})
    assert run["status"] == "QUEUED" and set(run["steps"]) == {
        "Stage_1", "Stage_2", "Stage_3", "Stage_4", "Plots"}
    assert "errorType" not in run


def test_cli_refuses_what_cannot_be_validated_or_rerun(stack: Stack) -> None:
    queued = submit_hypothesis(stack.db, title="q", idea=example_idea()).run_id
    out = cli(stack, "validate", queued, "--pass")
    assert out.returncode == 1 and "is QUEUED, not AWAITING_HUMAN" in out.stderr
    out = cli(stack, "rerun", queued, "--from", "Writeup")
    assert out.returncode == 1 and "only a run that is" in out.stderr
    run_id = awaiting_run(stack)
    out = cli(stack, "rerun", run_id, "--from", "Typesetting")
    assert out.returncode == 1 and f"steps: {', '.join(PIPELINE_STEP_NAMES)}" in out.stderr
    assert cli(stack, "validate", run_id).returncode == 2  # --pass or --fail is required
    stack.db.runs.update_one({"_id": run_id}, {"$unset": {"steps.Plots": ""}})
    out = cli(stack, "rerun", run_id, "--from", "Writeup")
    assert out.returncode == 1 and "earlier step(s) Plots did not complete" in out.stderr
