"""What a stage notebook hands on and takes: the previous stage's outputs via `ctx.input`,
or, run on its own, that stage's files in the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisci_nb.errors import MissingInput
from aisci_nb.research.treesearch.stage import previous_outputs, previous_stage


class Ctx:
    def __init__(self, inputs: dict, debug: bool) -> None:
        self.inputs, self.debug = inputs, debug

    def input(self, step: str, name: str) -> Path:
        try:
            return Path(self.inputs[step][name])
        except KeyError:
            raise MissingInput(step, name, self.inputs) from None


def test_previous_stage_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert previous_stage("Stage_1") is None and previous_stage("Stage_4") == "Stage_3"
    assert previous_outputs(Ctx({}, debug=False), "Stage_1") == {}
    given = {"Stage_1": {"journal": "/in/journal.json", "best_data": "/in/best_data.json"}}
    assert previous_outputs(Ctx(given, debug=False), "Stage_2") == {
        "journal": Path("/in/journal.json"), "best_data": Path("/in/best_data.json")}
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingInput):
        previous_outputs(Ctx({}, debug=True), "Stage_2")  # nothing local either
    local = tmp_path / "treesearch" / "Stage_1"
    local.mkdir(parents=True)
    (local / "journal.json").write_text("{}")
    (local / "best_data.json").write_text("{}")
    with pytest.raises(MissingInput):  # under the worker, never another run's leftovers
        previous_outputs(Ctx({}, debug=False), "Stage_2")
    got = previous_outputs(Ctx({}, debug=True), "Stage_2")
    assert got["journal"].read_text() == "{}"
    with pytest.raises(ValueError, match="unknown stage"):
        previous_stage("Stage_9")
