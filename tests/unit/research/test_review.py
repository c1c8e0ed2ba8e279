"""The automatic review: the NeurIPS form validated, one reviewer or an ensemble with a
meta-review, the verdict and the events that move the run to AWAITING_HUMAN."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from aisci_nb.research.llm import LLM, ScriptedProvider
from aisci_nb.research.llm.offline import scripted_llm
from aisci_nb.research.review import (
    SCORES,
    PaperText,
    Review,
    ReviewError,
    read_pdf,
    review_paper,
    run_review,
)

from .conftest import events, needs_tex, write_script

SCRIPTS = Path(__file__).resolve().parents[3] / "aisci_nb/research/llm/scripts"
FORM = json.loads(json.loads((SCRIPTS / "default" / "review.json").read_text())
                  ["entries"][0]["response"]["text"])
PAPER = PaperText("Width Versus Label Noise ... 1 Introduction ...", figures=4, pages=3)


@pytest.mark.parametrize(("field", "value"), [
    ("Overall", 11), ("Overall", 0), ("Originality", 5), ("Soundness", 0), ("Confidence", 6),
    ("Decision", "Maybe"), ("Strengths", "not a list")])
def test_a_score_out_of_its_range_is_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Review.model_validate({**FORM, field: value})


def test_a_missing_field_is_refused() -> None:
    form = {k: v for k, v in FORM.items() if k != "Limitations"}
    with pytest.raises(ValidationError, match="Limitations"):
        Review.model_validate(form)


def test_one_reviewer_gives_the_verdict_and_every_score() -> None:
    result = review_paper(scripted_llm("default"), PAPER)
    assert result.verdict == "pass" and result.meta.decision == "Accept"
    assert set(result.scores) == {*SCORES, "Decision"}
    assert result.scores["Overall"] == FORM["Overall"] and result.scores["Decision"] == 1.0


def test_below_the_threshold_an_accept_still_fails() -> None:
    result = review_paper(scripted_llm("default"), PAPER, pass_threshold=6)
    assert result.verdict == "fail"


def test_an_ensemble_is_averaged_and_the_meta_review_decides() -> None:
    result = review_paper(scripted_llm("review_ensemble"), PAPER, reviewers=3)
    assert [r.overall for r in result.reviews] == [6, 4, 5]
    assert result.scores["Overall"] == pytest.approx(5.0)
    assert result.meta.summary.startswith("Meta-review")
    assert result.verdict == "pass"


def test_an_invalid_answer_is_sent_back_once(tmp_path: Path) -> None:
    answers = [{**FORM, "Overall": 14}, FORM]
    script = write_script(tmp_path / "r.json", [
        {"role": "review", "match": "Review the paper", "response": {"text": json.dumps(a)}}
        for a in answers])
    result = review_paper(LLM({"*": (ScriptedProvider(script), "scripted")}), PAPER)
    assert result.verdict == "pass"
    assert len(result.attempts) == 1 and "Overall" in result.attempts[0]


def test_two_invalid_answers_fail_naming_the_field() -> None:
    with pytest.raises(ReviewError, match=r"does not fit the form twice.*Overall"):
        review_paper(scripted_llm("review_invalid"), PAPER)


@needs_tex
def test_run_review_reads_the_pdf_and_emits_the_validation(ctx, tmp_path: Path,
                                                           example_paper) -> None:
    ctx.inputs = {"Writeup": {"paper": str(example_paper.pdf)}}
    result = run_review(ctx, scripted_llm("default"), tmp_path / "review")
    paper = read_pdf(example_paper.pdf)
    assert paper.figures == 4 and paper.pages >= 2 and "Introduction" in paper.text
    got = events(ctx, tmp_path)
    types = [e["type"] for e in got]
    assert types.index("ai.validation.auto_started") < types.index("ai.validation.auto_completed")
    started = next(e["data"] for e in got if e["type"] == "ai.validation.auto_started")
    assert started["model"] == "scripted" and started["rubric_version"]
    done = next(e["data"] for e in got if e["type"] == "ai.validation.auto_completed")
    assert done["verdict"] == result.verdict == "pass"
    assert done["scores"] == result.scores
    saved = json.loads((tmp_path / "review" / "review.json").read_text())
    assert saved["meta"]["Decision"] == "Accept" and saved["scores"] == result.scores
