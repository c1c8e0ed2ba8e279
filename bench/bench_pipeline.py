"""Time per step of an offline end-to-end run, on the real worker (scripted LLM).

The run goes through every step of the experiment pipeline that exists: the four stages
(while the tree search is not merged, a fixture stage notebook hands on the packaged example
outputs in their place), then Plots, Writeup and Review, ending AWAITING_HUMAN. The baseline,
measured in the same run, is the same research code of each paper step called in-process
(no kernel, no worker, no MongoDB): the ratio is what the notebook runtime costs per step.

    python bench/bench_pipeline.py
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from _common import private_mongod, quiet_worker

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_STAGE = ROOT / "tests" / "notebooks" / "fixture_stage.ipynb"


def pipeline():
    from aisci_nb.worker.pipelines import EXPERIMENT_STEPS, PAPER_STEPS, Step

    if any(s.name == "Review" for s in EXPERIMENT_STEPS):
        return EXPERIMENT_STEPS, "real stages"
    stages = tuple(Step(f"Stage_{i}", str(FIXTURE_STAGE), "fixture stage outputs")
                   for i in range(1, 5))
    return stages + tuple(replace(s, requires=()) for s in PAPER_STEPS), "fixture stages"


def worker_run(steps) -> tuple[dict, float]:
    from pymongo import MongoClient

    from aisci_nb.contract.idea import example_idea
    from aisci_nb.queue.submit import submit_hypothesis
    from aisci_nb.settings import Settings
    from aisci_nb.storage.store import LocalStore

    with private_mongod("aisci_bench_pipeline") as (url, root):
        settings = Settings(_env_file=None, mongodb_url=url, runpod_pod_id="bench-pipeline",
                            work_dir=root / "work", artifacts_dir=root / "artifacts")
        db = MongoClient(url, tz_aware=True).get_default_database()
        run_id = submit_hypothesis(db, title="bench", idea=example_idea()).run_id
        worker = quiet_worker(settings, db, LocalStore(root / "artifacts"),
                             notebooks_dir=ROOT / "notebooks", steps=steps)
        started = time.perf_counter()
        worker.run_forever(max_runs=1, exit_when_idle=True)
        total = time.perf_counter() - started
        return db.runs.find_one({"_id": run_id}), total


def in_process() -> dict[str, float]:
    """The paper steps' research code with a debug context: the baseline."""
    import aisci_nb
    from aisci_nb.research.llm.offline import scripted_llm
    from aisci_nb.research.plots import run_plots
    from aisci_nb.research.review import run_review
    from aisci_nb.research.writeup import run_writeup

    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="aisci-bench-") as tmp, contextlib.chdir(tmp):
        out = Path(tmp)
        steps = (("Plots", lambda c: run_plots(c, scripted_llm(), out / "p", "t"), {}),
                 ("Writeup", lambda c: run_writeup(c, scripted_llm(), out / "w"),
                  {"Plots": {"figures": str(out / "p" / "figures.json")}}),
                 ("Review", lambda c: run_review(c, scripted_llm(), out / "r"),
                  {"Writeup": {"paper": str(out / "w" / "latex" / "paper.pdf")}}))
        for name, step, inputs in steps:
            ctx = aisci_nb.init(None, stage=name)
            ctx.inputs = inputs  # each step reads what the one before it wrote
            started = time.perf_counter()
            step(ctx)
            times[name] = time.perf_counter() - started
            ctx.close(timeout_s=1)
    return times


def main() -> None:
    os.environ.setdefault("LLM_SCRIPT", "default")
    steps, what = pipeline()
    run, total = worker_run(steps)
    baseline = in_process()
    print(f"offline end-to-end run ({what}, scripted LLM): {run['status']}")
    print(f"{'step':<10} {'worker s':>9} {'in-process s':>13} {'ratio':>6}")
    for step in steps:
        record = run["steps"].get(step.name) or {}
        took = record.get("duration_s") or 0.0
        base = baseline.get(step.name)
        shown = f"{base:13.2f} {took / base:6.2f}" if base else f"{'-':>13} {'-':>6}"
        print(f"{step.name:<10} {took:9.2f} {shown}  {record.get('status')}")
    print(f"{'total':<10} {total:9.2f}  (claim to AWAITING_HUMAN, wall)")


if __name__ == "__main__":
    main()
