"""`aisci debug --node`: a journal node rebuilt as a notebook in its restored directory."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import nbformat
import pytest

from aisci_nb.ops.debug import DebugError
from aisci_nb.ops.debug_node import find_node, node_notebook, restore_workdir, split_code
from aisci_nb.research.treesearch.journal import Journal, Node
from aisci_nb.storage.store import LocalStore

CODE = """import json
import os

SEED = int(os.environ.get("AISCI_SEED", "0"))


def train(n):
    total = 0
    for i in range(n):
        total += i
    return total


result = train(10)
print("trained", result)
raise ValueError("bad shape")
"""


def buggy_node() -> Node:
    return Node(id="Stage_1-n000", stage="Stage_1", step=1, op="draft", plan="Try a sum.",
                code=CODE, term_out="trained 45\nTraceback ...\nValueError: bad shape\n",
                exc_type="ValueError", is_buggy=True, reason="exception",
                exc_info='Traceback (most recent call last):\n  File "runfile.py", line 16, '
                         'in <module>\nValueError: bad shape\n', exec_time_s=0.1)


def test_code_splits_into_blocks_that_rebuild_it() -> None:
    blocks = split_code(CODE)
    assert len(blocks) >= 2
    assert "\n".join(text for _, text in blocks).split() == CODE.split()
    assert all(CODE.splitlines()[start - 1] == text.splitlines()[0] for start, text in blocks)


def test_notebook_puts_output_and_error_on_the_raising_cell() -> None:
    nb, cell_id = node_notebook(buggy_node())
    nbformat.validate(nb)
    assert "Try a sum." in nb.cells[1].source and "buggy (exception)" in nb.cells[0].source
    failing = next(c for c in nb.cells if c.get("id") == cell_id)
    assert 'raise ValueError("bad shape")' in failing.source
    kinds = [o.output_type for o in failing.outputs]
    assert kinds == ["stream", "error"]
    assert failing.outputs[1].ename == "ValueError"
    others = [c for c in nb.cells if c.cell_type == "code" and c.get("id") != cell_id]
    assert others and not any(c.outputs for c in others)


def test_find_node_and_restore_workdir(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    journal = Journal("Stage_1", nodes=[buggy_node()])
    path = journal.save(tmp_path / "journal.json")
    store.put_file("runs/r/artifacts/Stage_1/journal.json", path)
    run = {"_id": "r", "steps": {"Stage_1": {"outputs": {
        "journal": "runs/r/artifacts/Stage_1/journal.json"}}}}
    step, node = find_node(run, store, "Stage_1-n000")
    assert (step, node.code) == ("Stage_1", CODE)
    with pytest.raises(DebugError, match="no node"):
        find_node(run, store, "Stage_1-n999")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = CODE.encode()
        info = tarfile.TarInfo("runfile.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (tmp_path / "wd.tar.gz").write_bytes(buf.getvalue())
    store.put_file("k/workdir.tar.gz", tmp_path / "wd.tar.gz")
    restore_workdir(store, "k/workdir.tar.gz", tmp_path / "ws")
    assert (tmp_path / "ws" / "runfile.py").read_text() == CODE
