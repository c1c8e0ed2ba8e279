"""`aisci debug RUN_ID --node NODE_ID`: one tree-search node rebuilt as a notebook.

The node's plan becomes markdown, its code becomes cells (split at top-level blocks), and
what it printed and the error it raised are set beside the cell that raised it. The
notebook sits in the node's restored working directory (its files, as the sandbox left
them), with the step's inputs downloaded as the worker would, so a person can re-run and
fix the node by hand in JupyterLab, like a failed step.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import nbformat
from nbformat import NotebookNode
from pymongo.database import Database

from ..research.treesearch.journal import Journal, JournalError, Node
from ..storage.store import ArtifactStore
from ..worker.stepio import fetch_inputs
from .debug import DebugError, Workspace

RUNFILE_LINE = re.compile(r'File "[^"]*runfile\.py", line (\d+)')


def find_node(run: dict[str, Any], store: ArtifactStore, node_id: str) -> tuple[str, Node]:
    """The step whose journal holds `node_id` (its own stage first), and the node."""
    steps = run.get("steps") or {}
    named = [s for s in steps if node_id.startswith(f"{s}-")]
    for step in named + [s for s in steps if s not in named]:
        key = (steps[step].get("outputs") or {}).get("journal")
        if not key:
            continue
        try:
            journal = Journal.from_dict(json.loads(store.get_bytes(key)))
            return step, journal.get(node_id)
        except KeyError:
            continue
        except (JournalError, ValueError) as exc:
            raise DebugError(f"the journal of {step} ({key}) is unreadable: {exc}") from None
    with_journal = [s for s in steps if (steps[s].get("outputs") or {}).get("journal")]
    raise DebugError(f"run {run['_id']} has no node {node_id!r} in its journals "
                     f"(steps with a journal: {', '.join(with_journal) or 'none'})")


def split_code(code: str) -> list[tuple[int, str]]:
    """Top-level blocks (first line number, text), merged so cells are not one-liners."""
    lines = code.splitlines()
    blocks: list[tuple[int, list[str]]] = []
    for i, line in enumerate(lines, start=1):
        new_block = (line and not line[0].isspace() and not line.startswith((")", "]", "}"))
                     and (i == 1 or not lines[i - 2].strip()))
        if new_block or not blocks:
            if blocks and len([x for x in blocks[-1][1] if x.strip()]) < 4:
                blocks[-1][1].append(line)
                continue
            blocks.append((i, [line]))
        else:
            blocks[-1][1].append(line)
    return [(start, "\n".join(body).strip("\n")) for start, body in blocks
            if "\n".join(body).strip()]


def failing_line(exc_info: str | None) -> int | None:
    found = RUNFILE_LINE.findall(exc_info or "")
    return int(found[-1]) if found else None


def node_notebook(node: Node) -> tuple[NotebookNode, str]:
    """The notebook, and the id of the cell to open it at (the one that raised)."""
    status = "working" if node.is_good else f"buggy ({node.reason})"
    metric = (f"{node.metric.name} = {node.metric.value:.4g}"
              if node.metric and node.metric.value is not None else "none")
    header = (f"# Node {node.id} ({node.stage}, {node.op})\n\n"
              f"- parent: {node.parent_id or 'none'}\n- status: {status}\n"
              f"- metric: {metric}\n- run time: {node.exec_time_s} s\n"
              f"- analysis: {node.analysis or '-'}\n\n"
              "This notebook sits in the node's restored working directory; run its cells "
              "to reproduce the node (`AISCI_SEED` defaults to 0). In the search it ran as "
              "`runfile.py` in a sandbox, without network or credentials.")
    cells = [nbformat.v4.new_markdown_cell(header, id="node-header"),
             nbformat.v4.new_markdown_cell(f"## Plan\n\n{node.plan or '(none)'}",
                                           id="node-plan")]
    blocks = split_code(node.code) or [(1, "# the model's answer held no code")]
    line = failing_line(node.exc_info)
    target = len(blocks) - 1
    if line is not None:
        target = max(i for i, (start, _) in enumerate(blocks) if start <= line or i == 0)
    for i, (_, text) in enumerate(blocks):
        cell = nbformat.v4.new_code_cell(text, id=f"node-code-{i}")
        if i == target:
            if node.term_out:
                cell.outputs.append(nbformat.v4.new_output(
                    "stream", name="stdout", text=node.term_out))
            if node.is_buggy:
                info = node.exc_info or ""
                last = [x for x in info.strip().splitlines() if x.strip()]
                cell.outputs.append(nbformat.v4.new_output(
                    "error", ename=node.exc_type or "Error",
                    evalue=last[-1] if last else (node.reason or ""),
                    traceback=info.splitlines()))
        cells.append(cell)
    nb = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "aisci": {"node_id": node.id, "stage": node.stage}})
    return nb, f"node-code-{target}"


def restore_workdir(store: ArtifactStore, key: str, dest: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(store.get_bytes(key)), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")  # refuses absolute paths and links out


def prepare_node(db: Database, store: ArtifactStore, run_id: str, node_id: str,
                 root: Path = Path(".aisci/debug")) -> Workspace:
    """Download the node's journal, working directory and step inputs into
    `root/<run_id>/<node_id>/`, and write the node's notebook there."""
    run = db.runs.find_one({"_id": run_id})
    if run is None:
        raise DebugError(f"no run {run_id}")
    step, node = find_node(run, store, node_id)
    ws = (root / run_id / node_id).resolve()
    ws.mkdir(parents=True, exist_ok=True)
    try:
        if node.workdir_key:
            restore_workdir(store, node.workdir_key, ws)
        inputs = fetch_inputs(store, run["steps"], step, ws / "inputs")
    except Exception as exc:
        raise DebugError(f"could not download the node's files: {exc}") from exc
    nb, cell_id = node_notebook(node)
    notebook = ws / f"{PurePosixPath(node_id).name}.ipynb"
    nbformat.write(nb, notebook)
    return Workspace(ws, notebook, step, cell_id, inputs)
