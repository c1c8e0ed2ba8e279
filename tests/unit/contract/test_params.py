"""Typed parameters: declared once in the notebook, validated before a kernel starts, and
injected so that hostile strings arrive as data."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from aisci_nb.contract import params
from aisci_nb.runtime.execute import StepHandle, execute_step
from aisci_nb.worker.pipelines import EXPERIMENT_STEPS

from ...conftest import API_KEY, ROOT, S3_SECRET

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
ECHO = NOTEBOOKS / "echo.ipynb"
STAGE_1 = EXPERIMENT_STEPS[0].notebook_path()


def notebook_with(source: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters"]})
    return nbformat.v4.new_notebook(cells=[cell])


def test_declarations_come_from_the_parameters_cell() -> None:
    declared = params.declarations(nbformat.read(ECHO, as_version=4))
    assert list(declared) == ["text", "count", "ratio", "flag", "data", "required_tag"]
    assert declared["count"].annotation is int and declared["count"].default == 1
    assert declared["required_tag"].required  # None default, type without None
    assert not declared["text"].required
    untyped = params.declarations(notebook_with("n = 3\nx = None"))
    assert untyped["n"].annotation is int and not untyped["x"].required


@pytest.mark.parametrize(("given", "name", "problem"), [
    ({"required_tag": "t", "colour": "red"}, "colour", "unknown"),
    ({"required_tag": "t", "count": "10"}, "count", "valid integer"),
    ({"required_tag": "t", "flag": 1}, "flag", "valid boolean"),
    ({"required_tag": "t", "data": ["not", "a", "dict"]}, "data", "valid dictionary"),
    ({"text": "x"}, "required_tag", "missing"),
    ({"required_tag": "t", "data": {"when": object()}}, "data.when", "not JSON data"),
])
def test_bad_parameters_are_named(given: dict, name: str, problem: str) -> None:
    nb = nbformat.read(ECHO, as_version=4)
    with pytest.raises(params.ParameterError) as err:
        params.validate(nb, given)
    assert err.value.name == name
    assert problem in str(err.value)


def test_credential_names_and_values_are_never_parameters() -> None:
    with pytest.raises(params.ParameterError, match="credential"):
        params.declarations(notebook_with('openai_api_key: str = ""'))
    # `max_tokens` is not a credential.
    assert "max_tokens" in params.declarations(notebook_with("max_tokens: int = 5"))
    nb = nbformat.read(ECHO, as_version=4)
    with pytest.raises(params.ParameterError) as err:
        params.validate(nb, {"required_tag": "t", "data": {"k": [f"key={S3_SECRET}"]}},
                        secrets=[API_KEY, S3_SECRET])
    assert err.value.name == "data.k[0]"
    assert S3_SECRET not in str(err.value)


def test_invalid_parameters_start_no_kernel(tmp_path: Path) -> None:
    handle = StepHandle()
    idea = {"Title": f"leaked {API_KEY}"}
    result = execute_step(STAGE_1, tmp_path / "out.ipynb", {}, cwd=tmp_path / "cwd",
                          offered={"aisci": {"idea": idea}, "not_declared": 1},
                          secrets=[API_KEY],
                          handle=handle)
    assert result.error is not None
    assert result.error.code == "INVALID_PARAMETER"
    assert "'aisci.idea.Title'" in result.error.message and API_KEY not in result.error.message
    assert handle.session is None and result.kernel_pid is None
    assert not (tmp_path / "out.ipynb").exists()


HOSTILE = [
    'quote " and \' and \\" and \\\\',
    'triple """ and \'\'\' quotes',
    "new\nline\r\nand\ttab and \x00 nul",
    '"; open("pwned", "w").write("x"); "',
    '""" + __import__("os").system("touch pwned") + """',
    "{run_id} %s {{}} ${HOME} `touch pwned`",
    "ünïcødé — 🚀 \u202e rtl \ud7ff",
    "\\N{BULLET} \\u0041 \\x41 raw escapes",
]


def test_hostile_strings_arrive_as_data(tmp_path: Path) -> None:
    data = {s: [s, 1.5, None, True, {"nested": s}] for s in HOSTILE}
    cwd = tmp_path / "cwd"
    result = execute_step(ECHO, tmp_path / "out.ipynb",
                          {"text": "\n".join(HOSTILE), "data": data, "required_tag": HOSTILE[4],
                           "ratio": 2, "count": -3},
                          cwd=cwd)
    assert result.ok, result.error
    seen = json.loads((cwd / "echo.json").read_text())
    assert seen["text"] == "\n".join(HOSTILE)
    assert seen["data"] == data
    assert seen["required_tag"] == HOSTILE[4]
    assert seen["ratio"] == 2.0 and seen["count"] == -3
    assert sorted(p.name for p in cwd.iterdir()) == ["echo.json"]  # nothing ran: no "pwned"
    injected = [c for c in nbformat.read(result.output_path, as_version=4).cells
                if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1


@pytest.mark.parametrize("notebook", sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb")
                                             if ".ipynb_checkpoints" not in p.parts),
                         ids=lambda p: p.name)
def test_every_notebook_declares_its_parameters(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    declared = params.declarations(nb)
    assert {"aisci", "stage"} <= set(declared)  # the run info, not a list of plumbing
    assert (nb.nbformat, nb.nbformat_minor) >= (4, 5)
    ids = [c.get("id") for c in nb.cells]
    assert all(ids) and len(set(ids)) == len(ids)  # `aisci debug` links to cells by id
