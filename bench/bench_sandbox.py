"""Sandbox start-up overhead per node against a bare `python -c pass` subprocess.

Each sandboxed run does what the tree search does for a node: write the code into a fresh
working directory, build the allow-listed environment, start the isolation wrapper
(bubblewrap / unshare, whichever this machine allows), apply the resource limits in the
runner, run the code, and read back output and exception file. The baseline starts the same
interpreter with `-c pass`. Both run `pass`, so the difference is the sandbox alone.

    python bench/bench_sandbox.py [--runs 20]

Also with `--stages`: one offline pass through the four stages (scripted LLM, real torch
training in the sandbox) printing per-stage nodes (total/buggy/debugged), best metric and
wall time. Goal: overhead ratio ≤ 3 (the node's own work, a torch import alone, is seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from aisci_nb.research.treesearch.sandbox import Limits, detect_isolation, run_code


def bare(runs: int) -> list[float]:
    out = []
    for _ in tqdm(range(runs), desc="bare python -c pass"):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        out.append(time.perf_counter() - t0)
    return out


def sandboxed(runs: int, root: Path) -> list[float]:
    out = []
    for i in tqdm(range(runs), desc="sandboxed node"):
        t0 = time.perf_counter()
        result = run_code("pass\n", root / f"n{i}", Limits(wall_s=60))
        out.append(time.perf_counter() - t0)
        assert result.ok, result
    return out


def stages(root: Path) -> None:
    from aisci_nb.research.llm import LLM, ScriptedProvider
    from aisci_nb.research.treesearch.agent import Agent
    from aisci_nb.research.treesearch.config import TreeSearchSettings
    from aisci_nb.research.treesearch.journal import Journal
    from aisci_nb.research.treesearch.search import TreeSearch
    from aisci_nb.research.treesearch.stage import search_config, summary
    from aisci_nb.research.treesearch.stages import spec_for

    class Quiet:
        def event(self, event_type: str, **data: object) -> None:
            pass

        def progress(self, progress: float, **counters: object) -> None:
            pass

        def upload(self, path: Path, *, kind: str, name: str | None, key: str | None = None,
                   output: bool = True) -> str:
            return str(path)

    settings = TreeSearchSettings()
    llm = LLM({"*": (ScriptedProvider(os.environ.get("LLM_SCRIPT", "default")), "scripted")})
    journal = data = None
    started = time.perf_counter()
    for stage in ("Stage_1", "Stage_2", "Stage_3", "Stage_4"):
        spec, cfg = spec_for(stage), search_config(stage, settings)
        inherited = Journal.load(journal).best_node if journal else None
        search = TreeSearch(spec, Agent(llm, {}, spec, cfg.metric, cfg.limits.wall_s), cfg,
                            root / stage, Quiet(), inherited=inherited, inherited_data=data)
        result = search.run()
        print(json.dumps(summary(result)))
        if stage == "Stage_4":
            print("ablations", json.loads(result.best_data.read_text())["ablations"])
        journal, data = result.journal_path, result.best_data
    print(f"four stages: {time.perf_counter() - started:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--stages", action="store_true")
    args = ap.parse_args()
    kind, flags = detect_isolation()
    with tempfile.TemporaryDirectory(prefix="aisci-bench-sandbox-") as tmp:
        base = bare(args.runs)
        box = sandboxed(args.runs, Path(tmp))
        b, s = statistics.median(base), statistics.median(box)
        print(f"isolation: {kind.value} {' '.join(flags)}".rstrip())
        print(f"bare python -c pass: median {b * 1000:.1f} ms")
        print(f"sandboxed node:      median {s * 1000:.1f} ms "
              f"(+{(s - b) * 1000:.1f} ms per node)")
        print(f"ratio: {s / b:.2f}x")
        if args.stages:
            stages(Path(tmp))


if __name__ == "__main__":
    main()
