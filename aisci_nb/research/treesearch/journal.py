"""The search tree of one stage: nodes (what was tried, how it ran, what it scored) and the
journal that holds them, saved as the `journal.json` other steps read (PLAN.md's contract).

Everything `aisci debug --node` needs to rebuild a node lives here too: its code, plan,
captured output, error, and the key of its saved working directory.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ...errors import AisciError

DATA_FILE = "experiment_data.json"
JOURNAL_VERSION = 1


@dataclass
class Metric:
    name: str
    value: float | None
    maximize: bool = True
    description: str = ""

    def better_than(self, other: Metric | None) -> bool:
        if self.value is None:
            return False
        if other is None or other.value is None:
            return True
        return self.value > other.value if self.maximize else self.value < other.value


@dataclass
class Node:
    id: str
    stage: str
    step: int  # the iteration that created it (0: inherited from the previous stage)
    op: str  # draft, debug, improve, tune, ablate, inherited
    plan: str = ""
    code: str = ""
    parent_id: str | None = None
    term_out: str = ""
    exec_time_s: float | None = None
    exc_type: str | None = None
    exc_info: str | None = None
    is_buggy: bool | None = None  # None until it has run
    reason: str | None = None  # why buggy: exception, time, memory, cpu, exit, no_data, ...
    analysis: str = ""
    metric: Metric | None = None
    seeds: dict[str, Any] | None = None  # {"values": [...], "mean": m, "std": s}
    plots: list[str] = field(default_factory=list)  # artifact keys
    data_file: str = DATA_FILE
    workdir_key: str | None = None  # artifact key of the node's working directory (tar.gz)
    debug_depth: int = 0
    label: str | None = None  # the hyperparameter or ablation it is about, if any
    stable: bool | None = None  # whether its validation curve settled (stage 2's rule)

    @property
    def is_good(self) -> bool:
        return self.is_buggy is False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Node:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in raw.items() if k in known}
        if isinstance(data.get("metric"), dict):
            data["metric"] = Metric(**{k: data["metric"].get(k) for k in
                                       ("name", "value", "maximize", "description")
                                       if k in data["metric"]})
        return cls(**data)


class JournalError(AisciError, ValueError):
    """A journal file that cannot be read as one."""


@dataclass
class Journal:
    stage: str
    goal: str = ""
    nodes: list[Node] = field(default_factory=list)
    best_node_id: str | None = None

    def add(self, node: Node) -> Node:
        if any(n.id == node.id for n in self.nodes):
            raise ValueError(f"duplicate node id {node.id}")
        self.nodes.append(node)
        return node

    def get(self, node_id: str) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def children(self, node_id: str) -> list[Node]:
        return [n for n in self.nodes if n.parent_id == node_id]

    @property
    def own(self) -> list[Node]:
        """Nodes this stage created (not the one it inherited)."""
        return [n for n in self.nodes if n.op != "inherited"]

    @property
    def good(self) -> list[Node]:
        return [n for n in self.own if n.is_good]

    @property
    def buggy(self) -> list[Node]:
        return [n for n in self.own if n.is_buggy]

    @property
    def debugged(self) -> list[Node]:
        """Buggy nodes that a debug child fixed."""
        return [n for n in self.buggy
                if any(c.op == "debug" and c.is_good for c in self.children(n.id))]

    def best(self, nodes: list[Node] | None = None) -> Node | None:
        """The good node with the best metric (ties: the earlier one)."""
        best: Node | None = None
        for node in self.good if nodes is None else nodes:
            if node.is_good and node.metric is not None and node.metric.value is not None \
                    and math.isfinite(node.metric.value) \
                    and (best is None or node.metric.better_than(best.metric)):
                best = node
        return best

    @property
    def best_node(self) -> Node | None:
        return self.get(self.best_node_id) if self.best_node_id else None

    def to_dict(self) -> dict[str, Any]:
        return {"version": JOURNAL_VERSION, "stage": self.stage, "goal": self.goal,
                "best_node_id": self.best_node_id, "nodes": [n.to_dict() for n in self.nodes]}

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Journal:
        try:
            return cls(stage=raw["stage"], goal=raw.get("goal", ""),
                       nodes=[Node.from_dict(n) for n in raw.get("nodes", [])],
                       best_node_id=raw.get("best_node_id"))
        except (KeyError, TypeError) as exc:
            raise JournalError(f"not a tree-search journal: {exc!r}") from None

    @classmethod
    def load(cls, path: Path | str) -> Journal:
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise JournalError(f"cannot read journal {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise JournalError(f"{path}: a journal is a JSON object")
        return cls.from_dict(raw)
