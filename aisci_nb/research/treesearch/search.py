"""The search loop of one stage: pick actions (policy), ask the agent for code, run the
nodes in the sandbox (in parallel, one GPU each when there are GPUs), score them from their
saved results, until the stage's goal is met or its iteration limit is reached. Then the
best node is re-run with more seeds (mean ± std), and the journal, best code, best data
and figures are handed on.

It reports through an `Observer` (node events, progress, uploads) so it runs the same in a
notebook (the run context) and in tests (a recorder), without a kernel.
"""

from __future__ import annotations

import io
import json
import logging
import random
import shutil
import tarfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ...errors import AisciError
from .agent import Agent, Proposal
from .journal import DATA_FILE, Journal, Node
from .metrics import MetricError, MetricSpec, load_data, mean_std, parse_metric
from .policy import Action, PolicyConfig, select
from .sandbox import Limits, RunResult, detect_gpus, detect_isolation, run_code
from .stages import Rules, StageSpec, is_complete, stability

log = logging.getLogger(__name__)
SKIP_IN_TARBALL = {"tmp", ".mpl", "__pycache__"}
MAX_TARBALL = 50 * 2**20


class StageFailed(AisciError, RuntimeError):
    """The stage ended without meeting its goal; the journal is saved and uploaded."""


class AllNodesBuggy(StageFailed):
    """Every node of the stage was buggy (code ALL_NODES_BUGGY)."""


class MaxIterationsReached(StageFailed):
    """The iteration limit came before the stage's goal (code MAX_ITERATIONS)."""


class Observer(Protocol):
    def event(self, event_type: str, **data: Any) -> None: ...

    def progress(self, progress: float, **counters: Any) -> None: ...

    def upload(self, path: Path, *, kind: str, name: str | None, key: str | None = None,
               output: bool = True) -> str | None:
        """Store a file; its artifact key (None when there is no store)."""
        ...


@dataclass
class SearchConfig:
    max_iterations: int = 8
    num_workers: int = 1
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    seeds: int = 3
    search_seed: int = 0
    limits: Limits = field(default_factory=Limits)
    metric: MetricSpec = field(default_factory=MetricSpec)
    rules: Rules = field(default_factory=Rules)


@dataclass
class StageResult:
    journal: Journal
    journal_path: Path
    best: Node
    best_code: Path
    best_data: Path
    figures: list[Path]
    wall_s: float


class TreeSearch:
    def __init__(self, spec: StageSpec, agent: Agent, cfg: SearchConfig, workdir: Path,
                 observer: Observer, *, inherited: Node | None = None,
                 inherited_data: Path | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spec, self.agent, self.cfg, self.observer = spec, agent, cfg, observer
        self.workdir = workdir.resolve()
        self.journal = Journal(spec.name, spec.goal)
        self.rng = random.Random(cfg.search_seed * 1000 + spec.number)
        self.clock = clock
        self.seed: Node | None = None
        self.planned: list[str] = []
        self.gpus = detect_gpus()
        detect_isolation()  # once, before worker threads race to it
        self._announced: str | None = None
        if inherited is not None:
            self.seed = self._inherit(inherited, inherited_data)

    # -- setup -------------------------------------------------------------------------

    def _node_dir(self, node_id: str) -> Path:
        return self.workdir / "nodes" / node_id

    def _inherit(self, best: Node, data: Path | None) -> Node:
        """The previous stage's best node, as this stage's root (not run again)."""
        node = Node.from_dict({**best.to_dict(), "id": f"{self.spec.name}-n000",
                               "stage": self.spec.name, "step": 0, "op": "inherited",
                               "parent_id": None})
        node.analysis = f"best node {best.id} of {best.stage}, inherited"
        if data is not None and data.exists():
            dest = self._node_dir(node.id)
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(data, dest / DATA_FILE)
        return self.journal.add(node)

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> StageResult:
        started = self.clock()
        cfg, spec = self.cfg, self.spec
        if spec.grow_op == "ablate":
            self.planned = self.agent.plan_ablations(self.seed)
            log.info("%s: planned ablations %s", spec.name, self.planned)
        iteration = 0
        round_times: list[float] = []
        self._progress(iteration, round_times)
        while not is_complete(spec, self.journal, iteration, cfg.max_iterations, self.planned,
                              cfg.rules):
            if iteration >= cfg.max_iterations:
                self._save()
                self._fail()
            t0 = self.clock()
            count = min(cfg.num_workers, cfg.max_iterations - iteration)
            actions: list[Action] = []
            for _ in range(count):
                actions.append(select(self.journal, spec, self.rng, cfg.policy, seed=self.seed,
                                      planned=self.planned, pending=actions))
            nodes = [self._create(a, iteration + i + 1) for i, a in enumerate(actions)]
            with ThreadPoolExecutor(max_workers=cfg.num_workers) as pool:
                list(pool.map(self._execute, nodes, range(len(nodes))))
            iteration += count
            round_times.append(self.clock() - t0)
            self._update_best()
            self._save()
            self._progress(iteration, round_times)
        best = self._final_best()
        self._run_seeds(best)
        self._save()
        result = self._hand_on(best, self.clock() - started)
        self.observer.progress(1.0, iteration=iteration, max_iterations=cfg.max_iterations,
                               **self._counts(), best_metric=_value(best), eta_s=0.0)
        return result

    def _fail(self) -> None:
        total = len(self.journal.own)
        if not self.journal.good:
            raise AllNodesBuggy(f"{self.spec.name}: all {total} nodes were buggy "
                                f"(limit {self.cfg.max_iterations} iterations)")
        raise MaxIterationsReached(
            f"{self.spec.name}: {self.cfg.max_iterations} iterations without meeting the "
            f"goal ({len(self.journal.good)} working of {total} nodes)"
            + (f"; planned ablations {self.planned}" if self.planned else ""))

    def _counts(self) -> dict[str, int]:
        return {"good_nodes": len(self.journal.good), "buggy_nodes": len(self.journal.buggy),
                "total_nodes": len(self.journal.own)}

    def _progress(self, iteration: int, round_times: list[float]) -> None:
        cfg = self.cfg
        rounds_left = -(-(cfg.max_iterations - iteration) // cfg.num_workers)
        eta = sum(round_times) / len(round_times) * rounds_left if round_times else None
        best = self.journal.best_node
        self.observer.progress(min(iteration / cfg.max_iterations, 0.99), iteration=iteration,
                               max_iterations=cfg.max_iterations, **self._counts(),
                               best_metric=_value(best),
                               eta_s=round(eta, 1) if eta is not None else None)

    def _event(self, event_type: str, node: Node, **extra: Any) -> None:
        self.observer.event(event_type, stage=self.spec.name, node_id=node.id,
                            parent_id=node.parent_id, op=node.op, **extra)

    # -- one node ----------------------------------------------------------------------

    def _create(self, action: Action, step: int) -> Node:
        parent = action.parent
        node = Node(id=f"{self.spec.name}-n{len(self.journal.nodes):03d}", stage=self.spec.name,
                    step=step, op=action.op, parent_id=parent.id if parent else None,
                    label=action.label,
                    debug_depth=(parent.debug_depth + 1) if action.op == "debug" and parent
                    else 0)
        self.journal.add(node)
        self._event("ai.node.created", node)
        tried = [n.label for n in self.journal.own if n.op == "tune" and n.label]
        proposal: Proposal = self.agent.propose(action, tried)
        node.plan, node.code = proposal.plan, proposal.code
        node.label = proposal.label or node.label
        if proposal.error:
            node.is_buggy, node.reason = True, "malformed_response"
            node.exc_type, node.exc_info = "MalformedResponse", proposal.error
            node.analysis = f"unusable answer: {proposal.error}"
        else:
            self._event("ai.node.code_generated", node,
                        code_size_bytes=len(node.code.encode()))
        return node

    def _execute(self, node: Node, slot: int) -> None:
        if node.is_buggy:  # a malformed answer: nothing to run
            self._event("ai.node.completed", node, is_buggy=True, reason=node.reason,
                        exec_time_s=0.0)
            return
        gpu = self.gpus[slot % len(self.gpus)] if self.gpus else None
        wd = self._node_dir(node.id)
        self._event("ai.node.executing", node, gpu=gpu)
        result = run_code(node.code, wd, self.cfg.limits, gpu=gpu,
                          env={"AISCI_SEED": str(self.cfg.search_seed)})
        self._score(node, result, wd)
        node.plots = [k for k in (self._upload_node_file(node, p) for p in _plots(wd)) if k]
        node.workdir_key = self._upload_workdir(node, wd)
        self._event("ai.node.completed", node, is_buggy=node.is_buggy, reason=node.reason,
                    metric=_value(node), exec_time_s=round(node.exec_time_s or 0.0, 3))

    def _score(self, node: Node, result: RunResult, wd: Path) -> None:
        node.term_out, node.exec_time_s = result.output, round(result.exec_time_s, 3)
        node.exc_type, node.exc_info = result.exc_type, result.exc_info
        if not result.ok:
            node.is_buggy, node.reason = True, result.reason
            node.analysis = f"buggy ({result.reason}): {_last_line(result.exc_info)}"
            return
        try:
            data = load_data(wd / DATA_FILE)
            node.metric = parse_metric(data, self.cfg.metric)
        except MetricError as exc:
            node.is_buggy, node.reason = True, exc.reason
            node.exc_type, node.exc_info = "MetricError", str(exc)
            node.analysis = f"buggy ({exc.reason}): {exc}"
            return
        node.is_buggy = False
        node.stable = stability(data, self.cfg.rules)
        node.analysis = (f"{node.metric.name} = {node.metric.value:.4g} in "
                         f"{result.exec_time_s:.1f} s; validation curve "
                         f"{'settled' if node.stable else 'not settled'}")

    def _upload_node_file(self, node: Node, path: Path) -> str | None:
        key = None
        try:
            key = self.observer.upload(path, kind="figure", name=None, output=False,
                                       key=f"nodes/{node.id}/{path.name}")
        except Exception as exc:  # a node's plot is not worth the stage
            log.warning("could not upload %s: %s", path, exc)
        return key

    def _upload_workdir(self, node: Node, wd: Path) -> str | None:
        """The node's working directory as a tarball, so `aisci debug --node` restores it."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for item in sorted(wd.iterdir()):
                if item.name not in SKIP_IN_TARBALL:
                    tar.add(item, arcname=item.name)
        if buf.tell() > MAX_TARBALL:
            log.warning("%s: working directory too large to keep (%d bytes)", node.id,
                        buf.tell())
            return None
        path = wd.parent / f"{node.id}.workdir.tar.gz"
        path.write_bytes(buf.getvalue())
        try:
            return self.observer.upload(path, kind="workdir", name=None, output=False,
                                        key=f"nodes/{node.id}/workdir.tar.gz")
        except Exception as exc:
            log.warning("could not upload %s: %s", path, exc)
            return None

    # -- the stage's end ---------------------------------------------------------------

    def _announce(self, best: Node) -> None:
        if best.id != self._announced:
            self._announced = best.id
            self._event("ai.node.selected_best", best, is_buggy=False, metric=_value(best),
                        exec_time_s=best.exec_time_s)

    def _update_best(self) -> None:
        if self.spec.grow_op == "ablate":  # the full model stays the best; see _final_best
            return
        best = self.journal.best()
        if best is not None and best.id != self.journal.best_node_id:
            self.journal.best_node_id = best.id
            self._announce(best)
            code = self.workdir / "best_code.py"
            code.write_text(best.code)
            self.observer.upload(code, kind="code", name="best_code")

    def _final_best(self) -> Node:
        if self.spec.grow_op == "ablate" and self.seed is not None:
            self.journal.best_node_id = self.seed.id  # the full model, against its ablations
            return self.seed
        best = self.journal.best()
        assert best is not None  # every completion rule needs a working node
        self.journal.best_node_id = best.id
        return best

    def _run_seeds(self, best: Node) -> None:
        """Re-run the best node with other seeds: its metric as mean ± std."""
        if best.op == "inherited" or self.cfg.seeds <= 1 or best.metric is None:
            return
        seeds = [self.cfg.search_seed + k for k in range(1, self.cfg.seeds)]
        runs: list[dict[str, Any]] = []

        def one(seed: int, slot: int) -> None:
            wd = self.workdir / "seeds" / best.id / str(seed)
            gpu = self.gpus[slot % len(self.gpus)] if self.gpus else None
            result = run_code(best.code, wd, self.cfg.limits, gpu=gpu,
                              env={"AISCI_SEED": str(seed)})
            value = None
            if result.ok:
                try:
                    value = parse_metric(load_data(wd / DATA_FILE), self.cfg.metric).value
                except MetricError:
                    value = None
            runs.append({"seed": seed, "value": value, "reason": result.reason,
                         "exec_time_s": round(result.exec_time_s, 3)})

        with ThreadPoolExecutor(max_workers=self.cfg.num_workers) as pool:
            list(pool.map(one, seeds, range(len(seeds))))
        values = [best.metric.value] + [r["value"] for r in sorted(runs, key=lambda r: r["seed"])
                                        if r["value"] is not None]
        best.seeds = {**mean_std([float(v) for v in values if v is not None]),
                      "seeds": [self.cfg.search_seed, *seeds], "runs": runs}
        self.observer.progress(0.99, iteration=self.cfg.max_iterations, **self._counts(),
                               best_metric=best.seeds["mean"])

    def _save(self) -> Path:
        path = self.journal.save(self.workdir / "journal.json")
        self.observer.upload(path, kind="journal", name="journal")
        return path

    def _hand_on(self, best: Node, wall_s: float) -> StageResult:
        """Best code, best data (stage 4: with the ablations), the best node's figures."""
        code = self.workdir / "best_code.py"
        code.write_text(best.code)
        self.observer.upload(code, kind="code", name="best_code")
        src = self._node_dir(best.id) / DATA_FILE
        data = json.loads(src.read_text()) if src.exists() else {"metrics": {}}
        if best.seeds:
            data["seeds"] = {k: best.seeds[k] for k in ("values", "mean", "std")}
        if self.spec.grow_op == "ablate":
            data["ablations"] = {n.label: n.metric.value for n in self.journal.good
                                 if n.op in ("ablate", "debug") and n.label and n.metric}
        best_data = self.workdir / "best_data.json"
        best_data.write_text(json.dumps(data, indent=1))
        self.observer.upload(best_data, kind="data", name="best_data")
        if self.spec.grow_op == "ablate":  # the full model has its figures in stage 3
            named = [(f"{n.label}_{p.name}", p) for n in self.journal.good if n.label
                     for p in _plots(self._node_dir(n.id))]
        else:
            named = [(p.name, p) for p in _plots(self._node_dir(best.id))]
        figures = [p for _, p in named]
        for name, fig in named:
            self.observer.upload(fig, kind="figure", name=f"figure_{Path(name).stem}",
                                 key=f"figures/{name}")
        journal = self._save()
        self._announce(best)
        return StageResult(self.journal, journal, best, code, best_data, figures, wall_s)


def _plots(wd: Path) -> list[Path]:
    return sorted(p for p in wd.glob("*.png") if p.is_file()) if wd.exists() else []


def _value(node: Node | None) -> float | None:
    if node is None or node.metric is None:
        return None
    return node.metric.value


def _last_line(text: str | None) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""
