"""The ideation conversation with the scripted model: rounds, tools, retries, failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aisci_nb.research.ideation import (
    FIELDS,
    Hypothesis,
    IdeationFailed,
    LiteratureUnavailable,
    Paper,
    RecordedLiterature,
    generate_ideas,
)
from aisci_nb.research.llm import LLM, ChatRequest, ChatResponse, ScriptedProvider

from .test_idea import GOOD

HYP = Hypothesis("MLP width on noisy two-moons", "Wider MLPs help until label noise dominates")


class Recorder:
    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []

    def __call__(self, request: ChatRequest, response: ChatResponse) -> None:
        self.requests.append(request)


def scripted(script: str | Path, recorder: Recorder | None = None) -> LLM:
    return LLM({"*": (ScriptedProvider(script), "scripted")}, observer=recorder)


def write_script(tmp_path: Path, *replies: dict, repeat: bool = False) -> Path:
    entries = [{"role": "ideation", "response": r, "usage": {"input_tokens": 100,
                                                             "output_tokens": 10}}
               for r in replies]
    if repeat:
        entries[-1]["repeat"] = True
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"entries": entries}))
    return path


def call(name: str, **arguments: object) -> dict:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def test_the_default_script_searches_then_finalizes_each_idea() -> None:
    recorder = Recorder()
    result = generate_ideas(scripted("default", recorder), HYP, num_ideas=2, reflections=3,
                            search=RecordedLiterature())
    assert len(result.ideas) == 2 and all(tuple(i) == FIELDS for i in result.ideas)
    assert result.ideas[0]["Name"] != result.ideas[1]["Name"]
    assert result.rounds == [2, 2] and result.searches == 2
    assert result.usage.calls == 4 == len(recorder.requests)
    assert result.usage.input_tokens == 652 + 1520 + 692 + 1560
    # the recorded papers reached the model as the search tool's answer
    second = recorder.requests[1].messages
    assert second[-2].role == "tool" and "Deep Double Descent" in second[-2].content
    # the second idea is asked to differ from the first
    assert result.ideas[0]["Title"] in recorder.requests[2].messages[1].content


def test_a_malformed_idea_is_sent_back_and_retried_within_the_budget(tmp_path: Path) -> None:
    broken = {k: v for k, v in GOOD.items() if k != "Abstract"}
    script = write_script(tmp_path, call("finalize_idea", idea=broken),
                          {"text": "Sure! Here is my idea, it is great."},
                          call("finalize_idea", idea=GOOD))
    recorder = Recorder()
    result = generate_ideas(scripted(script, recorder), HYP, reflections=3)
    assert result.rounds == [3] and result.ideas[0]["Name"] == GOOD["Name"]
    texts = [m.content for m in recorder.requests[-1].messages]
    assert any("Refused: missing field Abstract" in t for t in texts)
    assert any("Your answer was not usable: not JSON" in t for t in texts)
    assert "the last" in texts[-1]  # the final round says so


def test_a_model_that_keeps_answering_garbage_fails_with_the_reason() -> None:
    recorder = Recorder()
    with pytest.raises(IdeationFailed) as exc:
        generate_ideas(scripted("ideation_garbage", recorder), HYP, reflections=4)
    assert len(recorder.requests) == 4  # the budget, not more
    assert "no valid idea after 4 round(s)" in str(exc.value)
    assert "not JSON" in str(exc.value)


def test_one_failed_idea_of_two_is_reported_and_the_other_kept(tmp_path: Path) -> None:
    script = write_script(tmp_path, call("finalize_idea", idea=GOOD), {"text": "no"},
                          repeat=True)
    warnings: list[str] = []
    result = generate_ideas(scripted(script), HYP, num_ideas=2, reflections=2,
                            on_warning=warnings.append)
    assert [i["Name"] for i in result.ideas] == [GOOD["Name"]]
    assert len(result.problems) == 1 and result.problems == warnings
    assert warnings[0].startswith("idea #2: no valid idea after 2 round(s)")


def test_search_off_offers_only_finalize_and_answers_a_search_anyway(tmp_path: Path) -> None:
    script = write_script(tmp_path, call("search_literature", query="width"),
                          call("finalize_idea", idea=GOOD))
    recorder = Recorder()
    result = generate_ideas(scripted(script, recorder), HYP, reflections=2, search=None)
    assert [t.name for t in recorder.requests[0].tools] == ["finalize_idea"]
    assert result.skipped_searches == 1 and result.searches == 0
    assert "Literature search is unavailable" in recorder.requests[1].messages[-2].content


def test_an_unavailable_search_warns_once_and_is_not_called_again(tmp_path: Path) -> None:
    calls: list[str] = []

    def failing(query: str, limit: int = 10) -> list[Paper]:
        calls.append(query)
        raise LiteratureUnavailable("HTTP 429 after 3 attempts")

    script = write_script(tmp_path, call("search_literature", query="a"),
                          call("search_literature", query="b"),
                          call("finalize_idea", idea=GOOD))
    warnings: list[str] = []
    result = generate_ideas(scripted(script), HYP, reflections=3, search=failing,
                            on_warning=warnings.append)
    assert result.ideas and calls == ["a"] and result.skipped_searches == 2
    assert warnings == ["literature search skipped: HTTP 429 after 3 attempts"]


def test_offline_ideation_is_deterministic() -> None:
    def once() -> dict:
        return generate_ideas(scripted("default"), HYP, num_ideas=3, reflections=3,
                              search=RecordedLiterature()).summary()

    first = once()
    assert first == once() and len(first["ideas"]) == 3
