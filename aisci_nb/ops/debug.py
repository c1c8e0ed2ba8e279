"""`aisci debug RUN_ID`: back to the failing cell, with the step's inputs in place (an
ideation request's id works too).

Prepares a local workspace (`.aisci/debug/<run_id>/`): the step's executed notebook, the
outputs of the steps before it (downloaded as the worker would), and the injected run info
(`aisci`) rewritten to those local paths and to the debug event sink, so re-running the
notebook reproduces the step without touching production (no events sent, artifacts kept
in a local directory). Then starts JupyterLab headless on loopback with a token and gives
one URL that opens the notebook at the failing cell (`#cell-id=`).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import nbformat
from nbformat import NotebookNode
from pymongo.database import Database

from ..contract import params
from ..contract.lifecycle import StepStatus
from ..contract.runinfo import PARAMETER as RUN_INFO
from ..errors import DebugError
from ..runtime.execute import ensure_cell_ids
from ..storage.store import ArtifactStore
from ..worker.stepio import fetch_inputs
from .services import free_port

INJECTED_TAG = "injected-parameters"
# Run-info fields cleared so that the notebook reports to the debug sink, never to production.
PRODUCTION_ONLY = ("events_url", "event_source", "seq_path", "spool_dir", "spool_max_bytes",
                   "traceparent")


@dataclass(frozen=True)
class Workspace:
    root: Path
    notebook: Path
    step: str
    cell_id: str | None
    inputs: dict[str, dict[str, str]]


@dataclass(frozen=True)
class Lab:
    process: subprocess.Popen
    url: str
    contents_url: str
    token: str

    @property
    def pid(self) -> int:
        return self.process.pid


def pick_step(run: dict[str, Any], step: str | None) -> str:
    steps = run.get("steps") or {}
    if step is not None:
        if step not in steps:
            known = ", ".join(steps) or "none"
            raise DebugError(f"run {run['_id']} has no step {step!r} (steps: {known})")
        return step
    failed = [n for n, r in steps.items() if r.get("status") == StepStatus.FAILED]
    if not failed:
        raise DebugError(f"run {run['_id']} has no failed step; name one with --step")
    return max(failed, key=lambda n: str(steps[n].get("startedAt") or ""))


def failing_cell_id(nb: NotebookNode, record: dict[str, Any]) -> str | None:
    """The cell the step failed in: from the step record, else the notebook's own marks."""
    recorded = (record.get("error") or {}).get("cellId")
    ids = {c.get("id") for c in nb.cells}
    if recorded in ids:
        return recorded
    for cell in nb.cells:
        if cell.get("metadata", {}).get("papermill", {}).get("status") == "failed" or any(
                o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return cell.get("id")
    return None


def rewrite_parameters(nb: NotebookNode, inputs: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Point the injected parameters at local inputs and the debug sink; the new values."""
    from papermill.translators import translate_parameters

    declared = params.declarations(nb)
    values = dict(nb.metadata.get("papermill", {}).get("parameters") or {})
    if RUN_INFO in declared:
        info = dict(values.get(RUN_INFO) or {})
        info.update(dict.fromkeys(PRODUCTION_ONLY))
        if inputs or info.get("inputs"):
            info["inputs"] = inputs
        values[RUN_INFO] = info
    try:
        params.validate(nb, {k: v for k, v in values.items() if v is not None})
    except params.ParameterError as exc:
        raise DebugError(f"the executed notebook's parameters do not validate: {exc}") from None
    source = translate_parameters("python3", "python", values,
                                  "Parameters, rewritten by `aisci debug`: local inputs, "
                                  "events to the debug sink")
    cell = next((c for c in nb.cells if INJECTED_TAG in c.metadata.get("tags", [])), None)
    if cell is None:
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": [INJECTED_TAG]})
        anchor = params.parameters_cell(nb)
        nb.cells.insert(nb.cells.index(anchor) + 1 if anchor is not None else 0, cell)
    cell.source = source
    nb.metadata.setdefault("papermill", {})["parameters"] = values
    return values


def prepare(db: Database, store: ArtifactStore, run_id: str, step: str | None = None,
            root: Path = Path(".aisci/debug")) -> Workspace:
    """Download the step's executed notebook and inputs into `root/<run_id>/`, rewritten."""
    # An ideation request is debugged like a run: its one step is `Ideation`.
    run = db.runs.find_one({"_id": run_id}) or db.ideation_requests.find_one({"_id": run_id})
    if run is None:
        raise DebugError(f"no run or ideation request {run_id}")
    name = pick_step(run, step)
    record = run["steps"][name]
    key = (record.get("outputs") or {}).get("notebook")
    if not key:
        why = (record.get("error") or {}).get("message")
        raise DebugError(f"step {name} of run {run_id} has no executed notebook"
                         + (f" (it failed before a kernel ran: {why})" if why else ""))
    ws = (root / run_id).resolve()
    notebook = ws / f"{name}.ipynb"
    try:
        store.get_file(key, notebook)
        inputs = fetch_inputs(store, run["steps"], name, ws / "inputs")
    except Exception as exc:  # S3 or the local store: say what could not be fetched
        raise DebugError(f"could not download the step's files: {exc}") from exc
    nb = ensure_cell_ids(nbformat.read(notebook, as_version=4))
    rewrite_parameters(nb, inputs)
    nbformat.write(nb, notebook)
    return Workspace(ws, notebook, name, failing_cell_id(nb, record), inputs)


def start_lab(ws: Workspace, port: int | None = None, ready_timeout_s: float = 90) -> Lab:
    """JupyterLab on loopback with a fresh token, no browser; returns once it serves the
    notebook. The token travels in the environment, not on the command line."""
    port = port or free_port()
    token = secrets.token_hex(24)
    log = (ws.root / "jupyterlab.log").open("ab")
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--ServerApp.root_dir={ws.root}", "--LabApp.extension_manager=readonly",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:  # containers and pods often run as root
        cmd.append("--allow-root")
    process = subprocess.Popen(cmd, cwd=ws.root, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "JUPYTER_TOKEN": token},
                               start_new_session=True)
    name = quote(ws.notebook.name)
    base = f"http://127.0.0.1:{port}"
    contents_url = f"{base}/api/contents/{name}?content=0&token={token}"
    deadline = time.monotonic() + ready_timeout_s
    try:
        while True:
            if process.poll() is not None:
                raise DebugError(f"JupyterLab exited with {process.returncode}; "
                                 f"see {ws.root / 'jupyterlab.log'}")
            try:
                if httpx.get(contents_url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise DebugError(f"JupyterLab did not answer within {ready_timeout_s:g}s")
            time.sleep(0.2)
    except BaseException:  # not ready, or the user gave up (Ctrl-C, SIGTERM): no orphan lab
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        raise
    fragment = f"#cell-id={quote(ws.cell_id)}" if ws.cell_id else ""
    return Lab(process, f"{base}/lab/tree/{name}?token={token}{fragment}", contents_url, token)
