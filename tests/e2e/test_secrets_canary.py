"""A careless notebook leaks a canary key every way it can; nothing that leaves the step
carries it (issue 13, finding 2): the executed notebook, the events, a text artifact, the
worker's log, the run page. The kernel holds a run token and an LLM key, never the worker's
key, the S3 secret or the database."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
from urllib.parse import quote

import httpx

from aisci_nb.contract.idea import example_idea
from aisci_nb.contract.scrub import MARKER
from aisci_nb.queue.submit import submit_hypothesis

from ..conftest import API_KEY, ROOT, S3_SECRET, UI_AUTH, UI_TOKEN, Stack, wait_until

CANARY = "sk-canary-" + "c0ffee" * 6


def leaks(text: str) -> list[str]:
    raw = CANARY.encode()
    forms = {"raw": CANARY, "b64": base64.b64encode(raw).decode(), "hex": raw.hex(),
             "url": quote(CANARY, safe=""), "worker key": API_KEY, "s3 secret": S3_SECRET,
             "ui token": UI_TOKEN}
    found = [name for name, form in forms.items() if form in text]
    if re.search(r"aisci-run\.v1\.[\w-]+\.\d+\.\d+\.", text):  # a whole run token
        found.append("run token")
    return found


def test_a_canary_key_reaches_no_output(stack: Stack) -> None:
    sub = submit_hypothesis(stack.db, title="canary", idea=example_idea())
    env = {**os.environ, **stack.env, "OPENAI_API_KEY": CANARY, "TEST_NOTEBOOK": "canary.ipynb",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "worker_driver.py"),
                           "--max-runs", "1"], env=env, cwd=stack.tmp, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = wait_until(lambda: (r := stack.db.runs.find_one({"_id": sub.run_id}))
                     and r.get("errorMessage") and r, what="the failure projected")
    assert run["status"] == "FAILED" and run["errorType"] == "ValueError"
    assert run["errorMessage"] == f"bad key {MARKER}"

    # The executed notebook in S3.
    store = stack.store()
    notebook = store.get_bytes(f"runs/{sub.run_id}/notebooks/Stage_1.ipynb").decode()
    assert leaks(notebook) == []
    assert "kernel holds: none of the worker's credentials" in notebook
    assert "run token present: True" in notebook
    assert f"the key is {MARKER}" in notebook and f"bad key {MARKER}" in notebook

    # The text artifact, uploaded by the worker from the kernel's outbox.
    key = f"runs/{sub.run_id}/artifacts/Stage_1/leak.txt"
    doc = wait_until(lambda: stack.db.artifacts.find_one({"runId": sub.run_id, "key": key}),
                     what="the artifact registered")
    body = store.get_bytes(key)
    assert body == f"artifact with {MARKER}".encode()
    assert doc["sha256"] == hashlib.sha256(body).hexdigest() and doc["kind"] == "text"
    assert run["steps"]["Stage_1"]["outputs"]["leak"] == key

    # Events (the kernel's log event, the worker's cell_failed and run.failed).
    wait_until(lambda: stack.db.events.find_one({"runId": sub.run_id,
                                                 "type": "ai.run.failed"}), what="run.failed")
    events = json.dumps([e["data"] for e in stack.db.events.find({"runId": sub.run_id})],
                        default=str)
    assert leaks(events) == []
    assert f"log event with {MARKER}" in events

    # The worker's log (its own lines and what the kernel process wrote outside cells).
    assert leaks(proc.stdout + proc.stderr) == [], (proc.stdout + proc.stderr)[-2000:]

    # The run page.
    page = httpx.get(f"{stack.control_plane_url}/runs/{sub.run_id}", headers=UI_AUTH)
    assert page.status_code == 200 and leaks(page.text) == []
