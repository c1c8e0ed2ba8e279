"""Best-first selection: which node to expand next, and how.

Per pick: stage 1 drafts from scratch until it has `num_drafts` drafts; with probability
`debug_prob` a buggy leaf (not debugged too deep already) is debugged; otherwise the best
working node is grown with the stage's operation (improve / tune / ablate). With nothing
working, buggy leaves are debugged, else stage 1 drafts again and later stages grow their
seed. Stage 4 first works through its planned ablations, each applied to the seed.
The RNG is the caller's, seeded, so a run's choices repeat.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .journal import Journal, Node
from .stages import StageSpec


@dataclass(frozen=True)
class PolicyConfig:
    num_drafts: int = 2
    debug_prob: float = 0.5
    max_debug_depth: int = 3


@dataclass(frozen=True)
class Action:
    op: str  # draft, debug, improve, tune, ablate
    parent: Node | None
    label: str | None = None


def debuggable(journal: Journal, cfg: PolicyConfig, taken: set[str]) -> list[Node]:
    """Buggy leaves not yet debugged too deep, nor picked already in this round."""
    return [n for n in journal.buggy
            if not journal.children(n.id) and n.debug_depth < cfg.max_debug_depth
            and n.id not in taken]


def select(journal: Journal, spec: StageSpec, rng: random.Random, cfg: PolicyConfig, *,
           seed: Node | None = None, planned: list[str] | None = None,
           pending: list[Action] | None = None) -> Action:
    """The next action; `pending` are the actions already chosen in this round (parallel
    nodes), so two workers do not debug one node or draft past `num_drafts`."""
    pending = pending or []
    taken = {a.parent.id for a in pending if a.op == "debug" and a.parent is not None}
    if spec.drafts:
        drafts = sum(1 for n in journal.own if n.op == "draft") + \
            sum(1 for a in pending if a.op == "draft")
        if drafts < cfg.num_drafts:
            return Action("draft", None)
    bugs = debuggable(journal, cfg, taken)
    if bugs and rng.random() < cfg.debug_prob:
        node = rng.choice(bugs)
        return Action("debug", node, node.label)
    if spec.grow_op == "ablate":
        todo = next_ablation(journal, planned or [], pending)
        if todo is not None:
            return Action("ablate", seed, todo)
    best = journal.best()
    if best is not None and spec.grow_op != "ablate":
        return Action(spec.grow_op, best)
    if bugs:
        node = rng.choice(bugs)
        return Action("debug", node, node.label)
    if spec.drafts:
        return Action("draft", None)
    if spec.grow_op == "ablate":  # all ablations tried, none left to debug: retry the first
        missing = [a for a in planned or [] if a not in {n.label for n in journal.good}]
        return Action("ablate", seed, missing[0] if missing else None)
    return Action(spec.grow_op, seed)


def next_ablation(journal: Journal, planned: list[str], pending: list[Action]) -> str | None:
    """The first planned ablation with no node yet (working or being debugged)."""
    tried = {n.label for n in journal.own if n.op in ("ablate", "debug")}
    tried |= {a.label for a in pending}
    return next((a for a in planned if a not in tried), None)
