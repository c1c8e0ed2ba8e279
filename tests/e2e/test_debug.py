"""A two-step pipeline that fails in Stage_2: what the steps hand on, that no secret lands
anywhere, and `aisci debug` bringing a person back to the failing cell."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nbformat
import papermill
import pytest
from papermill.exceptions import PapermillExecutionError

from aisci_nb.contract.idea import example_idea
from aisci_nb.ops.services import pid_alive, stop_pid
from aisci_nb.queue.submit import submit_hypothesis

from ..conftest import API_KEY, ROOT, S3_SECRET, Stack
from ..integration.test_runtime import PIPELINE_1, PIPELINE_2, cell_with_label, run_steps

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PIPELINE_SPEC = json.dumps([{"name": "Stage_1", "notebook": "pipeline/step_1.ipynb"},
                            {"name": "Stage_2", "notebook": "pipeline/step_2.ipynb"}])


def test_pipeline_hands_outputs_on_and_keeps_secrets_out(stack: Stack) -> None:
    sub = submit_hypothesis(stack.db, title="pipeline", idea=example_idea())
    proc = subprocess.run([sys.executable, "-m", "tests.step_driver", str(NOTEBOOKS),
                           PIPELINE_SPEC], env={**os.environ, **stack.env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = stack.db.runs.find_one({"_id": sub.run_id})
    assert run["errorType"] == "ValueError"
    assert run["errorMessage"] == "values above the limit 3: [4, 5]"
    steps = run["steps"]
    data_key = f"runs/{sub.run_id}/artifacts/Stage_1/data.json"
    assert steps["Stage_1"]["outputs"] == {
        "notebook": f"runs/{sub.run_id}/notebooks/Stage_1.ipynb", "data": data_key}
    assert steps["Stage_2"]["status"] == "FAILED"
    # The kernel uploaded with credentials from its environment: the bytes are in S3.
    assert json.loads(stack.store().get_bytes(data_key))["limit"] == 3

    # Secrets: in no stored object of the run, no event, no log line of the worker.
    store = stack.store()
    keys = [o.object_name for o in store.client.list_objects(
        store.bucket, prefix=f"runs/{sub.run_id}/", recursive=True)]
    assert len(keys) == 3
    events = list(stack.db.events.find({"runId": sub.run_id}))
    everything = "\n".join([*(store.get_bytes(k).decode() for k in keys),
                            json.dumps(events, default=str), proc.stdout, proc.stderr])
    assert "Stage_2" in everything and "values above the limit" in everything
    for secret in (API_KEY, S3_SECRET):
        assert secret not in everything


@pytest.fixture
def failed_run(stack: Stack) -> dict:
    run = run_steps(stack, (PIPELINE_1, PIPELINE_2))
    assert run["steps"]["Stage_2"]["status"] == "FAILED"
    return run


def aisci(stack: Stack, *args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aisci_nb.ops.cli", *args],
                            env={**os.environ, **stack.env}, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_debug_workspace_reproduces_the_failure(stack: Stack, failed_run: dict) -> None:
    run_id = failed_run["_id"]
    proc = aisci(stack, "debug", run_id, "--step", "Stage_2", "--no-lab", cwd=stack.tmp)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    ws = stack.tmp / ".aisci" / "debug" / run_id
    notebook = ws / "Stage_2.ipynb"
    assert f"notebook  {notebook}" in out
    local_data = ws / "inputs" / "Stage_1" / "data.json"
    assert f"input     Stage_1.data -> {local_data}" in out

    nb = nbformat.read(notebook, as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata["tags"])
    assert '"events_url": None' in injected.source and '"seq_path": None' in injected.source
    assert str(local_data) in injected.source
    assert f'"run_id": "{run_id}"' in injected.source
    assert all(c.get("id") for c in nb.cells)

    # Re-executing the prepared notebook reproduces the same exception, in the same cell.
    with pytest.raises(PapermillExecutionError) as exc:
        papermill.execute_notebook(str(notebook), str(ws / "rerun.ipynb"), cwd=str(ws),
                                   kernel_name="python3", progress_bar=False)
    assert exc.value.ename == "ValueError"
    assert exc.value.evalue == failed_run["errorMessage"]
    assert (ws / "aisci-debug-events.ndjson").exists()  # events went to the debug sink
    rerun = nbformat.read(ws / "rerun.ipynb", as_version=4)
    raised = [c["id"] for c in rerun.cells
              if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert raised == [failed_run["steps"]["Stage_2"]["error"]["cellId"]]


def wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_debug_opens_jupyterlab_at_the_failing_cell(stack: Stack, failed_run: dict) -> None:
    run_id = failed_run["_id"]
    started = time.monotonic()
    proc = aisci(stack, "debug", run_id, cwd=stack.tmp)  # the failed step is found
    pid = None
    try:
        lines = []
        url = None
        while url is None:
            line = proc.stdout.readline()
            assert line, f"aisci debug ended: {proc.stderr.read()[-2000:]}"
            lines.append(line)
            if match := re.search(r"\(pid (\d+);", line):
                pid = int(match.group(1))
            if line.startswith("http://"):
                url = line.strip()
        ready_s = time.monotonic() - started
        print(f"\naisci debug: command to a ready JupyterLab in {ready_s:.1f}s")
        assert pid is not None and pid_alive(pid)

        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/lab/tree/Stage_2\.ipynb"
                             r"\?token=(\w+)#cell-id=([\w-]+)", url)
        assert match, url
        port, token, cell_id = match.groups()
        failing = cell_with_label(nbformat.read(stack.tmp / ".aisci" / "debug" / run_id /
                                                "Stage_2.ipynb", as_version=4), "check")
        assert cell_id == failing["id"]
        base = f"http://127.0.0.1:{port}"
        served = httpx.get(f"{base}/api/contents/Stage_2.ipynb", params={"token": token})
        assert served.status_code == 200
        model = served.json()
        assert model["type"] == "notebook"
        assert any(c.get("id") == cell_id for c in model["content"]["cells"])
        assert httpx.get(f"{base}/api/contents/Stage_2.ipynb").status_code == 403  # no token
    finally:
        # SIGTERM to `aisci debug` takes its JupyterLab (and its valid token) down with it.
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        if pid is not None:
            gone = wait_gone(pid, 20)
            if not gone:
                stop_pid(pid)
    assert pid is not None and gone, "JupyterLab outlived aisci debug after SIGTERM"


def test_debug_names_what_is_missing(stack: Stack) -> None:
    proc = aisci(stack, "debug", "no-such-run", "--no-lab", cwd=stack.tmp)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.strip() == "aisci: error: no run or ideation request no-such-run"
    run = run_steps(stack, (PIPELINE_2,))  # refused before a kernel ran: nothing to open
    proc = aisci(stack, "debug", run["_id"], "--no-lab", cwd=stack.tmp)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "has no executed notebook (it failed before a kernel ran: parameter 'inputs'" in err
