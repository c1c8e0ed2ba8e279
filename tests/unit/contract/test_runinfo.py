"""The run info: validated where the runner injects it, refused by name when wrong."""

from __future__ import annotations

import nbformat
import pytest

from aisci_nb.contract import params
from aisci_nb.contract.runinfo import RunInfo

PARAMS = 'from typing import Any\n\naisci: dict[str, Any] | None = None\nstage: str = "Stage_2"'


def notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(PARAMS, metadata={"tags": ["parameters"]})]
    return nb


def test_run_info_round_trips_through_the_validator() -> None:
    info = RunInfo(run_id="r", inputs={"Stage_1": {"data": "/x/data.json"}}, lease_epoch=3)
    values = params.validate(notebook(), {}, offered={"aisci": info.model_dump(),
                                                      "stage": "Stage_2", "other": 1})
    assert RunInfo.of(values["aisci"]) == info and values["stage"] == "Stage_2"


def test_a_misspelt_field_is_refused_by_name() -> None:
    with pytest.raises(params.ParameterError, match=r"parameter 'aisci\.evnts_url'"):
        params.validate(notebook(), {}, offered={"aisci": {"evnts_url": "http://x"}})


def test_required_inputs_are_checked_before_a_kernel() -> None:
    need = (("Stage_1", "data"), ("Stage_1", "journal"))
    offered = {"aisci": {"inputs": {"Stage_1": {"data": "/x"}}}}
    with pytest.raises(params.ParameterError) as err:
        params.validate(notebook(), {}, offered=offered, requires=need)
    assert str(err.value) == ("parameter 'inputs': missing (required): Stage_1.journal; no "
                              "earlier step of this run produced it")
    with pytest.raises(params.ParameterError, match="parameter 'inputs'"):
        params.validate(notebook(), {}, requires=need)  # no run info at all


def test_requirements_need_the_run_info_declared() -> None:
    nb = notebook()
    nb.cells[0].source = "limit: int = 3"
    with pytest.raises(params.ParameterError, match="parameter 'aisci': not declared"):
        params.validate(nb, {}, requires=(("Stage_1", "data"),))
