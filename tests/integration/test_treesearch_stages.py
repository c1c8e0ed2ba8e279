"""The four tree-search stages through a real worker, MongoDB, S3 and control plane, offline
(the scripted LLM): node events projected, journals handed on, and the two ways a stage
fails (ALL_NODES_BUGGY, MAX_ITERATIONS) provoked by scripts that never work / never finish."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time

import nbformat
import pytest

from aisci_nb.contract.idea import example_idea
from aisci_nb.control_plane.readmodel import node_states
from aisci_nb.queue.submit import submit_hypothesis

from ..conftest import API_KEY, S3_SECRET, Stack

STAGES = ("Stage_1", "Stage_2", "Stage_3", "Stage_4")
# Small limits keep the offline run short (one draft, buggy, then debugged; two tuning
# proposals; one improvement; two ablations; the best node re-run with a second seed).
FAST = {"TREESEARCH_STAGE1_MAX_ITERATIONS": "3", "TREESEARCH_STAGE2_MAX_ITERATIONS": "2",
        "TREESEARCH_STAGE3_MAX_ITERATIONS": "1", "TREESEARCH_STAGE4_MAX_ITERATIONS": "2",
        "TREESEARCH_NUM_DRAFTS": "1",
        "TREESEARCH_NUM_WORKERS": "2", "TREESEARCH_SEEDS": "2",
        "TREESEARCH_NODE_TIMEOUT_S": "240",
        # a key the sandboxed code must never see; the recorded script answers regardless
        "OPENAI_API_KEY": "sk-" + S3_SECRET, "LLM_OFFLINE": "true"}


def wait_for(predicate, timeout_s: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def run_once(stack: Stack, extra: dict[str, str], timeout: float = 600) -> str:
    run_id = submit_hypothesis(stack.db, title="tree search", idea=example_idea()).run_id
    proc = stack.run_worker("--mode", "experiment", "--max-runs", "1", timeout=timeout,
                            extra_env={**FAST, **extra})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_id


def test_four_stages_offline(stack: Stack) -> None:
    run_id = run_once(stack, {})
    run = stack.db.runs.find_one({"_id": run_id})
    # the four stages, then plots, the paper and its review: the run waits for a person
    assert run["status"] == "AWAITING_HUMAN", run.get("errorMessage")
    store = stack.store()
    journals = {}
    for stage in STAGES:
        outputs = run["steps"][stage]["outputs"]
        for name in ("journal", "best_code", "best_data"):
            assert name in outputs, (stage, name)
        assert any(k.startswith("figure_") for k in outputs), stage  # real plots
        journals[stage] = j = json.loads(store.get_bytes(outputs["journal"]))
        best = next(n for n in j["nodes"] if n["id"] == j["best_node_id"])
        data = json.loads(store.get_bytes(outputs["best_data"]))
        assert best["is_buggy"] is False and 0.5 < best["metric"]["value"] <= 1.0
        assert data["metrics"]["val_accuracy"] == best["metric"]["value"]
        assert store.get_bytes(outputs["best_code"]).decode() == best["code"]
        for node in j["nodes"]:
            if node["op"] != "inherited":
                assert node["workdir_key"], node["id"]  # what `aisci debug --node` restores
    s1 = journals["Stage_1"]["nodes"]
    assert sum(n["is_buggy"] for n in s1) >= 1  # a buggy node ...
    assert any(n["op"] == "debug" and not n["is_buggy"] for n in s1)  # ... debugged
    best1 = next(n for n in s1 if n["id"] == journals["Stage_1"]["best_node_id"])
    assert len(best1["seeds"]["values"]) == 2 and best1["seeds"]["std"] >= 0
    # Each stage starts from the previous stage's best node.
    for prev, cur in itertools.pairwise(STAGES):
        root = journals[cur]["nodes"][0]
        assert root["op"] == "inherited"
        assert root["code"] == next(n for n in journals[prev]["nodes"]
                                    if n["id"] == journals[prev]["best_node_id"])["code"]
    s2_data = json.loads(store.get_bytes(run["steps"]["Stage_2"]["outputs"]["best_data"]))
    assert s2_data["sweeps"]
    s4_data = json.loads(store.get_bytes(run["steps"]["Stage_4"]["outputs"]["best_data"]))
    assert set(s4_data["ablations"]) == {"linear_model", "no_input_noise"}
    assert s4_data["ablations"]["linear_model"] < s4_data["metrics"]["val_accuracy"]

    # Node events, projected: one row per node with its final state.
    nodes = wait_for(lambda: (n := node_states(stack.db, run_id, "Stage_1"))
                     and all(x.get("last_event") in ("ai.node.completed",
                                                     "ai.node.selected_best") for x in n)
                     and len(n) == len(s1) and n, what="node projection")
    by_id = {n["node_id"]: n for n in nodes}
    for node in s1:
        assert by_id[node["id"]]["is_buggy"] == node["is_buggy"]
        assert by_id[node["id"]]["exec_time_s"] > 0
    types = {e["type"] for e in stack.db.events.find({"runId": run_id})}
    assert {"ai.node.created", "ai.node.code_generated", "ai.node.executing",
            "ai.node.completed", "ai.node.selected_best"} <= types
    progress = [e["data"] for e in stack.db.events.find(  # the search's, not the cells'
        {"runId": run_id, "type": "ai.run.stage_progress", "data.stage": "Stage_1",
         "data.total_nodes": {"$exists": True}}).sort("seq", 1)]
    last = progress[-1]
    assert last["progress"] == 1.0 and last["total_nodes"] == len(s1)
    assert last["buggy_nodes"] + last["good_nodes"] == last["total_nodes"]
    assert any(p.get("eta_s") is not None for p in progress)
    # the read model keeps each stage's search counters (the run went on to the paper steps)
    stage4 = stack.db.runs.find_one({"_id": run_id})["stageState"]["Stage_4"]
    assert stage4["maxIterations"] == 2 and stage4["progress"] == 1.0
    assert stage4["totalNodes"] == stage4["goodNodes"] + stage4["buggyNodes"] >= 1
    # No secret in what the run left behind: journals, events.
    everything = json.dumps(journals) + json.dumps(
        [e["data"] for e in stack.db.events.find({"runId": run_id})], default=str)
    assert API_KEY not in everything and S3_SECRET not in everything


@pytest.mark.parametrize(("script", "stage", "code"), [
    ("never_works", "Stage_1", "ALL_NODES_BUGGY"),
    ("never_finishes", "Stage_2", "MAX_ITERATIONS"),
])
def test_stage_failures(stack: Stack, script: str, stage: str, code: str) -> None:
    run_id = run_once(stack, {"LLM_SCRIPT": script, "TREESEARCH_SEEDS": "1"})
    run = stack.db.runs.find_one({"_id": run_id})
    assert run["status"] == "FAILED"
    assert run["steps"][stage]["status"] == "FAILED"
    failed = wait_for(lambda: stack.db.events.find_one(
        {"runId": run_id, "type": "ai.run.failed"}), what="ai.run.failed")
    assert failed["data"]["code"] == code
    assert failed["data"]["stage"] == stage
    # The failed stage's journal is still there, for people and `aisci debug --node`.
    journal = json.loads(stack.store().get_bytes(run["steps"][stage]["outputs"]["journal"]))
    own = [n for n in journal["nodes"] if n["op"] != "inherited"]
    assert len(own) == (3 if stage == "Stage_1" else 2)
    if code == "ALL_NODES_BUGGY":
        assert all(n["is_buggy"] and n["exc_type"] == "RuntimeError" for n in own)
        # A buggy node back as a notebook, in its restored working directory.
        node_id = own[-1]["id"]
        proc = subprocess.run(
            [sys.executable, "-m", "aisci_nb.ops.cli", "debug", run_id, "--node", node_id,
             "--no-lab"], env={**os.environ, **stack.env}, cwd=stack.tmp, capture_output=True,
            text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        ws = stack.tmp / ".aisci" / "debug" / run_id / node_id
        assert (ws / "runfile.py").read_text() == own[-1]["code"]
        nb = nbformat.read(ws / f"{node_id}.ipynb", as_version=4)
        errors = [o for c in nb.cells for o in c.get("outputs", [])
                  if o.output_type == "error"]
        assert [e.ename for e in errors] == ["RuntimeError"]
        assert f"node {node_id}" in proc.stdout
    else:
        assert all(not n["is_buggy"] and n["stable"] is False for n in own)
