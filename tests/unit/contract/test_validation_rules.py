"""The lifecycle rules of a human verdict and of a re-run (pure, no services)."""

from __future__ import annotations

import pytest

from aisci_nb.contract.lifecycle import (
    HUMAN_VERDICT,
    RERUNNABLE,
    RunStatus,
    can_transition,
    human_verdict_filter,
    rerun_filter,
)
from aisci_nb.queue.rerun import steps_from
from aisci_nb.worker.pipelines import PAPER_STEPS, PIPELINE_STEP_NAMES


def test_a_verdict_moves_only_a_run_awaiting_a_person() -> None:
    assert HUMAN_VERDICT == {"pass": RunStatus.HUMAN_VALIDATED, "fail": RunStatus.FAILED}
    for verdict, target in HUMAN_VERDICT.items():
        assert can_transition(RunStatus.AWAITING_HUMAN, target)
        assert human_verdict_filter("r", verdict) == {"_id": "r", "status": "AWAITING_HUMAN"}
    with pytest.raises(KeyError):
        human_verdict_filter("r", "maybe")


def test_a_validated_or_canceled_run_is_not_rerun() -> None:
    assert RunStatus.HUMAN_VALIDATED not in RERUNNABLE
    assert RunStatus.CANCELED not in RERUNNABLE
    assert RunStatus.RUNNING not in RERUNNABLE  # a worker holds it
    assert rerun_filter("r")["status"] == {"$in": ["AWAITING_HUMAN", "COMPLETED", "FAILED"]}


def test_steps_from_names_the_valid_steps() -> None:
    names = ("Stage_1", "Plots", "Writeup", "Review")
    assert steps_from(names, "writeup") == ["Writeup", "Review"]
    assert steps_from(names, "Stage_1") == list(names)
    with pytest.raises(ValueError, match=r"no step 'Paper'.*Stage_1, Plots, Writeup, Review"):
        steps_from(names, "Paper")


def test_only_the_review_step_validates_and_the_paper_steps_end_the_pipeline() -> None:
    assert [s.name for s in PAPER_STEPS if s.validation] == ["Review"]
    assert PIPELINE_STEP_NAMES[-3:] == ("Plots", "Writeup", "Review")
    assert [s.requires for s in PAPER_STEPS][1:] == [(("Plots", "figures"),),
                                                     (("Writeup", "paper"),)]
