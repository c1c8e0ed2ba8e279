"""Idea validation: what the model answers, turned into a checked idea or one clear reason."""

from __future__ import annotations

import json

import pytest

from aisci_nb.contract.idea import validate_idea
from aisci_nb.research.ideation import FIELDS, MalformedIdea, parse_idea

GOOD = {
    "Name": "width_noise_peak",
    "Title": "Where does the width peak move under label noise?",
    "Short Hypothesis": "The test-error peak moves to larger widths as label noise grows.",
    "Related Work": "Double descent (Nakkiran et al., 2020) on image data.",
    "Abstract": "We sweep width and label noise on two-moons and locate the test-error peak "
                "relative to the interpolation threshold.",
    "Experiments": ["Sweep width 2..1024", "Noise 0..30%"],
    "Risk Factors and Limitations": "Toy data only.",
}


def test_a_valid_idea_keeps_the_seven_fields_and_joins_lists() -> None:
    idea = parse_idea(GOOD).as_json()
    assert tuple(idea) == FIELDS and len(FIELDS) == 7
    assert idea["Experiments"] == "- Sweep width 2..1024\n- Noise 0..30%"
    validate_idea(idea)  # what a run's Stage_1 accepts


def test_text_answers_plain_or_fenced_and_the_tool_argument_shape() -> None:
    fenced = f"Here it is:\n```json\n{json.dumps(GOOD)}\n```\nDone."
    assert parse_idea(fenced).name == "width_noise_peak"
    assert parse_idea(json.dumps(GOOD)).title == GOOD["Title"]
    assert parse_idea({"idea": GOOD}).name == "width_noise_peak"


@pytest.mark.parametrize(("raw", "reason"), [
    ('{"Name": "x", "Title": ', "not JSON"),
    ("[1, 2]", "expected a JSON object"),
    ({k: v for k, v in GOOD.items() if k != "Abstract"}, "missing field Abstract"),
    ({**GOOD, "Name": "Has Spaces"}, "Name: Value error, must be lowercase"),
    ({**GOOD, "Abstract": "too short"}, "Abstract: String should have at least 50"),
])
def test_malformed_answers_say_what_is_wrong(raw: object, reason: str) -> None:
    with pytest.raises(MalformedIdea) as exc:
        parse_idea(raw)
    assert reason in str(exc.value)
