"""Selection, completion rules, metric parsing and response parsing on hand-built journals."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from aisci_nb.contract.failures import code_for
from aisci_nb.research.treesearch.agent import parse_response
from aisci_nb.research.treesearch.journal import Journal, Metric, Node
from aisci_nb.research.treesearch.metrics import (
    MetricError,
    MetricSpec,
    is_stable,
    load_data,
    mean_std,
    parse_metric,
)
from aisci_nb.research.treesearch.policy import Action, PolicyConfig, select
from aisci_nb.research.treesearch.stages import Rules, is_complete, spec_for

S1, S2, S3, S4 = (spec_for(f"Stage_{i}") for i in range(1, 5))


def node(i: int, op: str = "draft", buggy: bool | None = False, value: float | None = None,
         parent: str | None = None, stage: str = "Stage_1", **kw) -> Node:
    metric = Metric("val_accuracy", value) if value is not None else None
    return Node(id=f"n{i}", stage=stage, step=i, op=op, is_buggy=buggy, metric=metric,
                parent_id=parent, **kw)


def journal(*nodes: Node, stage: str = "Stage_1") -> Journal:
    j = Journal(stage)
    for n in nodes:
        j.add(n)
    return j


def test_drafts_first_then_best_first_improvement() -> None:
    rng, cfg = random.Random(0), PolicyConfig(num_drafts=2, debug_prob=0.0)
    j = journal()
    first = select(j, S1, rng, cfg)
    assert first.op == "draft"
    assert select(j, S1, rng, cfg, pending=[first]).op == "draft"
    assert select(j, S1, rng, cfg, pending=[first, first]).op == "draft"  # nothing works yet
    j = journal(node(1, value=0.7), node(2, value=0.9), node(3, buggy=True))
    action = select(j, S1, rng, cfg)
    assert action.op == "improve" and action.parent.id == "n2"  # the best working node


def test_debug_probability_and_depth() -> None:
    j = journal(node(1, value=0.7), node(2, buggy=True), node(3, buggy=True, debug_depth=3))
    always = PolicyConfig(num_drafts=1, debug_prob=1.0, max_debug_depth=3)
    picks = {select(j, S1, random.Random(s), always).parent.id for s in range(20)}
    assert picks == {"n2"}  # n3 is debugged as deep as allowed
    never = PolicyConfig(num_drafts=1, debug_prob=0.0)
    assert select(j, S1, random.Random(0), never).op == "improve"
    # Nothing works: buggy leaves are debugged whatever the probability; one per round.
    j = journal(node(1, buggy=True), node(2, buggy=True))
    a = select(j, S1, random.Random(0), never)
    b = select(j, S1, random.Random(0), never, pending=[a])
    assert {a.op, b.op} == {"debug"} and a.parent.id != b.parent.id


def test_selection_is_deterministic_for_a_seed() -> None:
    j = journal(node(1, value=0.7), node(2, buggy=True), node(3, buggy=True), node(4, value=.8))
    cfg = PolicyConfig(num_drafts=1, debug_prob=0.5)

    def seq(seed: int) -> list[tuple[str, str | None]]:
        rng = random.Random(seed)
        return [(a.op, a.parent.id if a.parent else None)
                for a in (select(j, S1, rng, cfg) for _ in range(12))]

    assert seq(3) == seq(3)
    assert len({op for op, _ in seq(3)}) == 2  # both debugging and improving happen


def test_later_stages_grow_their_seed_and_stage4_follows_the_plan() -> None:
    seed = node(0, op="inherited", value=0.9, stage="Stage_2")
    j = journal(seed, stage="Stage_2")
    cfg = PolicyConfig(debug_prob=0.0)
    a = select(j, S2, random.Random(0), cfg, seed=seed)
    assert a == Action("tune", seed)
    j4 = journal(seed, node(1, op="ablate", value=0.8, label="no_a", parent="n0"), stage="S4")
    a = select(j4, S4, random.Random(0), cfg, seed=seed, planned=["no_a", "no_b", "no_c"])
    assert (a.op, a.label, a.parent) == ("ablate", "no_b", seed)
    b = select(j4, S4, random.Random(0), cfg, seed=seed, planned=["no_a", "no_b", "no_c"],
               pending=[a])
    assert b.label == "no_c"


def test_completion_rules() -> None:
    assert not is_complete(S1, journal(node(1, buggy=True)), 1, 5)
    assert is_complete(S1, journal(node(1, buggy=True), node(2, value=0.5)), 2, 5)
    rules = Rules(min_tuned=2)
    seed = node(0, op="inherited", value=0.9)
    tuned = [node(1, op="tune", value=0.91, stable=True), node(2, op="tune", value=0.95,
                                                              stable=False)]
    assert not is_complete(S2, journal(seed, *tuned), 2, 6, rules=rules)  # best not settled
    tuned[1].stable = True
    assert is_complete(S2, journal(seed, *tuned), 2, 6, rules=rules)
    assert not is_complete(S2, journal(seed, tuned[0]), 1, 6, rules=rules)  # one proposal
    assert not is_complete(S3, journal(node(1, op="improve", value=0.9)), 3, 4)
    assert is_complete(S3, journal(node(1, op="improve", value=0.9)), 4, 4)
    assert not is_complete(S3, journal(node(1, op="improve", buggy=True)), 4, 4)
    ablations = [node(1, op="ablate", value=0.7, label="a"),
                 node(2, op="ablate", buggy=True, label="b")]
    assert not is_complete(S4, journal(*ablations), 2, 6, planned=["a", "b"])
    ablations.append(node(3, op="debug", value=0.6, label="b", parent="n2"))
    assert is_complete(S4, journal(*ablations), 3, 6, planned=["a", "b"])


def test_metrics_come_from_the_saved_file(tmp_path: Path) -> None:
    spec = MetricSpec("val_loss", maximize=False)
    path = tmp_path / "experiment_data.json"
    with pytest.raises(MetricError) as err:
        load_data(path)
    assert err.value.reason == "no_data"
    path.write_text("val_loss=0.1")  # printed, not saved: not JSON
    with pytest.raises(MetricError) as err:
        load_data(path)
    assert err.value.reason == "bad_data"
    for bad in ({"metrics": {"acc": 1.0}}, {"metrics": {"val_loss": "low"}},
                {"metrics": {"val_loss": float("nan")}}, {"metrics": {"val_loss": True}}):
        path.write_text(json.dumps(bad))
        with pytest.raises(MetricError) as err:
            parse_metric(load_data(path), spec)
        assert err.value.reason == "bad_metric"
    path.write_text(json.dumps({"metrics": {"val_loss": 0.25}, "series": {}}))
    m = parse_metric(load_data(path), spec)
    assert (m.name, m.value, m.maximize) == ("val_loss", 0.25, False)
    assert Metric("val_loss", 0.2, False).better_than(m)
    assert is_stable([1.0, 0.5, 0.30, 0.31, 0.30]) and not is_stable([0.5, 0.2, 0.9, 0.1])
    ms = mean_std([0.8, 0.9, 1.0])
    assert ms["mean"] == pytest.approx(0.9) and ms["std"] == pytest.approx(0.1)


def test_best_node_and_journal_round_trip(tmp_path: Path) -> None:
    j = journal(node(1, value=0.7), node(2, buggy=True), node(3, op="debug", value=0.9,
                                                              parent="n2"))
    assert j.best().id == "n3" and [n.id for n in j.debugged] == ["n2"]
    j.best_node_id = "n3"
    j.get("n3").seeds = mean_std([0.9, 0.88])
    path = j.save(tmp_path / "journal.json")
    raw = json.loads(path.read_text())
    for key in ("id", "parent_id", "stage", "step", "plan", "code", "term_out", "exec_time_s",
                "exc_type", "exc_info", "is_buggy", "analysis", "metric", "seeds", "plots",
                "data_file"):
        assert key in raw["nodes"][0], key
    assert set(raw["nodes"][2]["metric"]) == {"name", "value", "maximize", "description"}
    back = Journal.load(path)
    assert back.best_node.metric.value == 0.9 and back.children("n2")[0].id == "n3"


def test_response_parsing_never_raises() -> None:
    ok = parse_response("Hyperparameter: lr\nSweep it.\n\n```python\nprint(1)\n```\n")
    assert ok.error is None and ok.code == "print(1)\n" and ok.label == "lr"
    assert "Sweep it." in ok.plan
    assert parse_response("I cannot help with that.").error
    assert "compile" in parse_response("```python\ndef f(:\n```").error
    assert parse_response("").error


def test_stage_failures_have_their_codes() -> None:
    assert code_for("AllNodesBuggy") == "ALL_NODES_BUGGY"
    assert code_for("MaxIterationsReached") == "MAX_ITERATIONS"
