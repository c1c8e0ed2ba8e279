"""LLM usage end to end: step notebooks calling the scripted provider through `llm_for(ctx)`
under the real worker, their `ai.llm.usage` events projected onto the run (per model and
per step), counted in `/metrics`, shown on the run page; and a run over its budget."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nbformat
import pytest

from aisci_nb.contract.idea import example_idea
from aisci_nb.queue.submit import submit_hypothesis
from aisci_nb.research.llm import Usage
from aisci_nb.research.llm.pricing import cost_usd
from aisci_nb.worker.telemetry import gpu_name

from ..conftest import ROOT, UI_AUTH, Stack

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SCRIPT = Path(__file__).resolve().parents[1] / "llm_scripts" / "usage.json"
OPENAI_KEY = "sk-test-openai-key-never-to-be-seen"
USAGE = {"ideation": ("gpt-5-mini", Usage(1000, 200, 400)),
         "code": ("claude-sonnet-4-5", Usage(2000, 500, 0)),
         "review": ("gpt-5-mini", Usage(3000, 100, 0))}
STEP_1 = [["ideation", "an idea"], ["code", "write it"], ["ideation", "another"]]
STEP_2 = [["review", "review it"], ["code", "fix it"]]


def price(role: str) -> float:
    model, usage = USAGE[role]
    return cost_usd(model, usage)[0]


def run_pipeline(stack: Stack, **env: str) -> subprocess.CompletedProcess:
    spec = json.dumps([
        {"name": "Stage_1", "notebook": "llm_calls.ipynb", "parameters": {"calls": STEP_1}},
        {"name": "Stage_2", "notebook": "llm_calls.ipynb", "parameters": {"calls": STEP_2}}])
    # A key is set, and LLM_OFFLINE keeps the calls on the scripted provider: the key must
    # still land nowhere.
    llm_env = {"LLM_SCRIPT": str(SCRIPT), "LLM_OFFLINE": "true", "OPENAI_API_KEY": OPENAI_KEY,
               "ANTHROPIC_API_KEY": "", **env}
    return subprocess.run([sys.executable, "-m", "tests.step_driver", str(NOTEBOOKS), spec],
                          env={**os.environ, **stack.env, **llm_env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def projected(stack: Stack, run_id: str, calls: int) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = stack.db.runs.find_one({"_id": run_id})
        if (run.get("llmUsage") or {}).get("calls") == calls:
            return run
        time.sleep(0.1)
    raise AssertionError(f"llmUsage never counted {calls} calls: {run.get('llmUsage')}")


def test_usage_totals_on_run_metrics_and_page(stack: Stack) -> None:
    sub = submit_hypothesis(stack.db, title="llm usage", idea=example_idea())
    proc = run_pipeline(stack)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = projected(stack, sub.run_id, calls=5)
    assert run["status"] == "COMPLETED", run.get("errorMessage")

    u = run["llmUsage"]
    roles = [r for r, _ in STEP_1 + STEP_2]
    assert u["promptTokens"] == sum(USAGE[r][1].input_tokens for r in roles) == 9000
    assert u["completionTokens"] == sum(USAGE[r][1].output_tokens for r in roles) == 1500
    assert u["cachedTokens"] == 800
    assert u["costUsd"] == pytest.approx(sum(price(r) for r in roles))
    by_model = {r["model"]: r for r in u["byModel"]}
    assert by_model["gpt-5-mini"]["calls"] == 3 and by_model["claude-sonnet-4-5"]["calls"] == 2
    assert by_model["claude-sonnet-4-5"]["costUsd"] == pytest.approx(2 * price("code"))
    by_step = {r["step"]: r for r in u["byStep"]}
    assert by_step["Stage_1"]["costUsd"] == pytest.approx(2 * price("ideation") + price("code"))
    assert by_step["Stage_2"]["costUsd"] == pytest.approx(price("review") + price("code"))
    rows = {(r["step"], r["model"]): r["calls"] for r in u["byStepModel"]}
    assert rows == {("Stage_1", "claude-sonnet-4-5"): 1, ("Stage_1", "gpt-5-mini"): 2,
                    ("Stage_2", "claude-sonnet-4-5"): 1, ("Stage_2", "gpt-5-mini"): 1}

    # GPU time next to it: the steps' seconds with the pod's GPU (none on a CPU machine).
    assert run["gpuUsage"]["name"] == gpu_name()
    assert run["gpuUsage"]["seconds"] == pytest.approx(
        sum(run["gpuUsage"]["byStep"].values()), abs=0.01)
    assert run["gpuUsage"]["seconds"] > 0 and len(run["gpuUsage"]["byStep"]) == 2

    metrics = httpx.get(f"{stack.control_plane_url}/metrics", headers=UI_AUTH).text
    cost = re.search(r'aisci_llm_cost_usd_total\{model="claude-sonnet-4-5",'
                     r'provider="scripted"\} (\S+)', metrics)
    assert cost and float(cost.group(1)) == pytest.approx(2 * price("code"))
    assert re.search(r'aisci_llm_tokens_total\{kind="input",model="gpt-5-mini",'
                     r'provider="scripted"\} 5000\.0', metrics)

    page = httpx.get(f"{stack.control_plane_url}/runs/{sub.run_id}", headers=UI_AUTH).text
    assert 'id="llm-by-model"' in page and "claude-sonnet-4-5" in page
    assert f"{u['costUsd']:.4f}" in page

    # The key reached the kernel's environment only: no event, notebook or log shows it.
    events = list(stack.db.events.find({"runId": sub.run_id}))
    store = stack.store()
    notebooks = [store.get_bytes(f"runs/{sub.run_id}/notebooks/{s}.ipynb").decode()
                 for s in ("Stage_1", "Stage_2")]
    everything = "\n".join([json.dumps(events, default=str), *notebooks, proc.stdout,
                            proc.stderr])
    assert "ai.llm.usage" in everything and OPENAI_KEY not in everything


def test_run_over_budget_fails_and_keeps_what_it_made(stack: Stack) -> None:
    step_1 = 2 * price("ideation") + price("code")
    # Stage_2 alone stays under the budget: only the run's total, carried from Stage_1's
    # kernel to Stage_2's by the ledger, crosses it (with Stage_2's first call).
    budget = step_1 + price("review") / 2
    assert price("review") + price("code") < budget
    sub = submit_hypothesis(stack.db, title="over budget", idea=example_idea())
    proc = run_pipeline(stack, LLM_BUDGET_USD=repr(budget))
    assert proc.returncode == 0, proc.stderr[-3000:]

    run = stack.db.runs.find_one({"_id": sub.run_id})
    assert run["status"] == "FAILED" and run["attempt"] == 1  # not retried
    assert run["errorType"] == "BUDGET_EXCEEDED"
    assert "LLM_BUDGET_USD" in run["errorMessage"]
    assert run["steps"]["Stage_1"]["status"] == "COMPLETED"
    assert run["steps"]["Stage_2"]["status"] == "FAILED"
    failed = stack.db.events.find_one({"runId": sub.run_id, "type": "ai.run.failed"})
    assert failed["data"]["code"] == "BUDGET_EXCEEDED" and failed["data"]["retryable"] is False
    assert failed["data"]["stage"] == "Stage_2"

    # Nothing made before is lost: both steps' outputs and both executed notebooks.
    store = stack.store()
    for stage in ("Stage_1", "Stage_2"):
        text = store.get_bytes(f"runs/{sub.run_id}/artifacts/{stage}/before.txt").decode()
        assert text == f"{stage} wrote this before its LLM calls"
    nb = nbformat.reads(store.get_bytes(
        f"runs/{sub.run_id}/notebooks/Stage_2.ipynb").decode(), as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors and errors[0]["ename"] == "BudgetExceeded"
    # The call that crossed was counted; none was made after it.
    run = projected(stack, sub.run_id, calls=4)
    assert run["llmUsage"]["costUsd"] == pytest.approx(step_1 + price("review"))


def test_budget_spent_before_a_resume_holds_on_a_fresh_pod(stack: Stack) -> None:
    """A resumed run on a pod that never saw it: the worker seeds the ledger from the run's
    projected spending, so the first call of the step is refused before it is made."""
    sub = submit_hypothesis(stack.db, title="resumed", idea=example_idea())
    stack.db.runs.update_one({"_id": sub.run_id}, {"$set": {"llmUsage": {
        "calls": 3, "costUsd": 0.75, "byStep": [{"step": "Stage_1", "costUsd": 0.75}]}}})
    proc = run_pipeline(stack, LLM_BUDGET_USD="0.5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = stack.db.runs.find_one({"_id": sub.run_id})
    assert run["errorType"] == "BUDGET_EXCEEDED", run.get("errorTraceback")
    assert run["steps"]["Stage_1"]["status"] == "FAILED"
    assert "$0.7500" in run["errorMessage"]
    assert stack.db.events.count_documents({"runId": sub.run_id, "type": "ai.llm.usage"}) == 0
