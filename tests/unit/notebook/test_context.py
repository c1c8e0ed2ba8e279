"""What a step notebook calls on its context: inputs, metrics, logs, progress."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import aisci_nb
from aisci_nb.errors import AisciError, InvalidMetric, MissingInput
from aisci_nb.notebook import bootstrap
from aisci_nb.notebook.context import RunContext


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunContext:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data.json"
    data.write_text("{}")
    context = aisci_nb.init({"run_id": "r1", "inputs": {"Stage_1": {"data": str(data)}}},
                            stage="Stage_2")
    yield context
    context.close(timeout_s=1)


def sent(ctx: RunContext, event_type: str) -> list[dict]:
    ctx.events.emitter.flush(timeout_s=5)
    path = Path.cwd() / bootstrap.DEBUG_EVENTS_FILE
    events = [json.loads(line) for line in path.open()] if path.exists() else []
    return [e["data"] for e in events if e["type"] == event_type]


def test_input_is_a_path(ctx: RunContext, tmp_path: Path) -> None:
    assert ctx.input("Stage_1", "data") == tmp_path / "data.json"


def test_missing_input_names_what_is_missing_and_what_there_is(ctx: RunContext) -> None:
    with pytest.raises(MissingInput) as err:
        ctx.input("Stage_1", "journal")
    assert str(err.value) == "no input Stage_1.journal: this run's inputs are: Stage_1.data"
    assert isinstance(err.value, AisciError) and isinstance(err.value, LookupError)


def test_no_inputs_at_all_says_how_to_get_them(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ctx = aisci_nb.init(None, stage="Plots")
    with pytest.raises(MissingInput, match=r"no input Stage_4\.best_data: this run has no "
                                           r"inputs at all .*aisci debug"):
        ctx.input("Stage_4", "best_data")
    ctx.close(timeout_s=1)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), "high", None])
def test_non_finite_metrics_are_refused_at_the_call(ctx: RunContext, value: object) -> None:
    with pytest.raises(InvalidMetric, match="metric 'loss'"):
        ctx.metric("loss", value)  # type: ignore[arg-type]
    assert "loss" not in ctx.metrics
    assert sent(ctx, "ai.run.stage_metric") == []


def test_finite_metric_is_sent(ctx: RunContext) -> None:
    ctx.metric("val_accuracy", 0.75)
    assert [(d["name"], d["value"]) for d in sent(ctx, "ai.run.stage_metric")] == [
        ("val_accuracy", 0.75)]


@pytest.mark.parametrize(("given", "level"), [
    ("warn", "warn"), ("warning", "warn"), ("WARNING", "warn"), ("info", "info"),
    ("error", "error"), ("critical", "error"), ("debug", "debug"), (logging.WARNING, "warn")])
def test_log_levels_as_authors_write_them(ctx: RunContext, given: str | int, level: str) -> None:
    ctx.log("careful", level=given, step=3)
    assert [(d["level"], d["message"], d["kv"]) for d in sent(ctx, "ai.run.log")] == [
        (level, "careful", {"step": 3})]


def test_unknown_log_level_is_refused(ctx: RunContext) -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        ctx.log("x", level="loud")


def test_logging_handler_forwards_records(ctx: RunContext) -> None:
    logger = logging.getLogger("my_experiment")
    handler = ctx.log_handler()
    logger.addHandler(handler)
    try:
        logger.setLevel(logging.DEBUG)
        logger.debug("below the handler's level")
        logger.warning("lr %s too high", 0.5)
        logging.getLogger("aisci_nb.events.emitter").addHandler(handler)
        logging.getLogger("aisci_nb.events.emitter").warning("delivery retry")  # skipped
    finally:
        logger.removeHandler(handler)
        logging.getLogger("aisci_nb.events.emitter").removeHandler(handler)
    assert [(d["level"], d["message"], d["kv"]) for d in sent(ctx, "ai.run.log")] == [
        ("warn", "lr 0.5 too high", {"logger": "my_experiment"})]


def test_track_drives_progress_events(ctx: RunContext) -> None:
    assert list(ctx.track(range(50), disable=True)) == list(range(50))
    progress = sent(ctx, "ai.run.stage_progress")
    assert [p["iteration"] for p in progress] == list(range(5, 51, 5))
    assert progress[-1]["progress"] == 1.0 and {p["max_iterations"] for p in progress} == {50}
    assert {p["stage"] for p in progress} == {"Stage_2"}


def test_track_without_a_total_only_moves_the_bar(ctx: RunContext) -> None:
    assert sum(ctx.track(iter(range(10)), disable=True)) == 45
    assert sent(ctx, "ai.run.stage_progress") == []
