"""Per-step overhead of the notebook runtime against running the same code in-process.

The runtime path is what the worker does for a step: validate the parameters against the
notebook's declaration, inject them, start a kernel, execute with per-cell hooks and saves,
shut the kernel down, and upload the executed notebook. The baseline executes the same
cells' code with `exec` in this process (fresh namespace, modules already imported).

    python bench/bench_step_overhead.py [--steps 5] [--s3]

`--s3` uploads to the S3 store of the settings in the environment / `.env` (e.g. after
`aisci services up`); the default is the local directory store. Goal: ≤ 1.5 s per step.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import nbformat
from tqdm import tqdm

from aisci_nb.contract import params
from aisci_nb.runtime.execute import execute_step
from aisci_nb.storage.store import ArtifactStore, LocalStore, store_from_env

PARAMETERS = '''from typing import Any

aisci: dict[str, Any] | None = None
stage: str = "Stage_1"
size: int = 200_000'''

CELLS = [
    '''# papermill_description=init
import aisci_nb
import numpy as np

ctx = aisci_nb.init(aisci, stage=stage)''',
    '''# papermill_description=work
values = np.arange(size, dtype=np.float64)
total = float((values ** 2).sum())
ctx.metric("total", total)
print(f"total={total:.3e}")''',
    '''# papermill_description=close
ctx.close()''',
]

GIVEN = {"aisci": {"run_id": "bench-run", "idea": {
    "Title": "bench", "Abstract": "a step of the size of a small real one"}}, "stage": "Stage_1"}


def write_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"display_name": "Python 3", "language": "python",
                                 "name": "python3"}})
    nb.cells = [nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
                *(nbformat.v4.new_code_cell(src) for src in CELLS)]
    nbformat.write(nb, path)
    return path


def in_process(notebook: Path) -> float:
    """The same code, exec'd here: the parameters cell, the injected values, the cells."""
    started = time.perf_counter()
    nb = nbformat.read(notebook, as_version=4)
    namespace: dict = {}
    exec(nb.cells[0].source, namespace)
    namespace.update(GIVEN)
    for cell in nb.cells[1:]:
        exec(cell.source, namespace)
    return time.perf_counter() - started


def through_runtime(notebook: Path, work: Path, store: ArtifactStore, i: int) -> dict[str, float]:
    marks: dict[str, float] = {}
    started = time.perf_counter()

    def on_event(event_type: str, data: dict) -> None:
        if event_type == "ai.run.cell_started":
            marks.setdefault("first_cell", time.perf_counter())
        elif event_type == "ai.run.cell_completed":
            marks["last_cell"] = time.perf_counter()

    result = execute_step(notebook, work / f"out-{i}.ipynb", {}, offered=GIVEN,
                          cwd=work / "cwd", on_event=on_event)
    if not result.ok:
        raise SystemExit(f"the bench notebook failed: {result.error}")
    executed = time.perf_counter()
    store.put_file(f"runs/bench-run/notebooks/Stage_1-{i}.ipynb", result.output_path)
    done = time.perf_counter()
    return {"total": done - started, "kernel_start": marks["first_cell"] - started,
            "cells": marks["last_cell"] - marks["first_cell"],
            "shutdown": executed - marks["last_cell"], "upload": done - executed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--s3", action="store_true", help="upload to the configured S3 store")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        notebook = write_notebook(work / "bench_step.ipynb")
        store = store_from_env() if args.s3 else LocalStore(work / "store")
        nb = nbformat.read(notebook, as_version=4)
        t = time.perf_counter()
        for _ in range(100):
            params.validate(nb, {}, offered=GIVEN)
        validate_s = (time.perf_counter() - t) / 100
        in_process(notebook)  # warm the imports once, as a long-lived process would have
        base = [in_process(notebook) for _ in tqdm(range(args.steps), desc="in-process")]
        runs = [through_runtime(notebook, work, store, i)
                for i in tqdm(range(args.steps), desc="runtime   ")]
    # Medians: a shared CI machine's bursts of load should not decide the figure.
    mean = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    base_s = statistics.median(base)
    overhead = mean["total"] - base_s
    print(f"store: {type(store).__name__}, steps: {args.steps}, medians")
    print(f"in-process      {base_s:8.3f} s per step")
    print(f"runtime         {mean['total']:8.3f} s per step  (ratio {mean['total'] / base_s:.1f}x, "
          f"slowest {max(r['total'] for r in runs):.3f} s)")
    print(f"  validation      {validate_s * 1000:6.2f} ms")
    print(f"  to first cell   {mean['kernel_start']:6.3f} s  (injection, kernel start)")
    print(f"  cells           {mean['cells']:6.3f} s  (including saves)")
    print(f"  shutdown        {mean['shutdown']:6.3f} s")
    print(f"  upload          {mean['upload']:6.3f} s")
    print(f"overhead        {overhead:8.3f} s per step  (goal <= 1.5 s: "
          f"{'met' if overhead <= 1.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
