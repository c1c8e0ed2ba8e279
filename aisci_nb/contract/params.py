"""A notebook's typed parameters, declared once in its `parameters` cell.

The cell is ordinary Python that runs on its own (JupyterLab, nbval) and is also the
declaration the runner validates against before a kernel starts:

    aisci: dict[str, Any] | None = None  # the run info the worker injects (contract.runinfo)
    stage: str = "Stage_1"               # typed, with a default
    epochs: int = 60
    seed: int = None                     # required: None only lets the notebook open alone

A parameter whose default is `None` while its type does not admit `None` is *required*
when the runner executes the notebook. Unannotated assignments take the type of their
default (`Any` for `None`). Validation is strict (no "10" for an int), unknown names are
refused, and values must be JSON data so injection writes them as plain literals. Names
that look like credentials are refused at declaration: secrets reach the kernel through
its environment, never as parameters.
"""

from __future__ import annotations

import ast
import re
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from nbformat import NotebookNode
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from ..errors import ParameterError
from .runinfo import PARAMETER as RUN_INFO
from .runinfo import RunInfo

PARAMETERS_TAG = "parameters"
_SECRET_NAME = re.compile(r"(^|_)(api_?key|secret(_key)?|password|passwd|credentials?|token)($|_)")
_TYPE_NAMES: dict[str, Any] = {
    **{name: getattr(typing, name) for name in typing.__all__},
    **{t.__name__: t for t in (str, int, float, bool, dict, list, tuple, type(None))},
    "None": None,
}


@dataclass(frozen=True)
class Declared:
    name: str
    annotation: Any
    default: Any
    required: bool


def parameters_cell(nb: NotebookNode) -> NotebookNode | None:
    for cell in nb.cells:
        if cell.cell_type == "code" and PARAMETERS_TAG in cell.metadata.get("tags", []):
            return cell
    return None


def _admits_none(annotation: Any) -> bool:
    try:
        TypeAdapter(annotation).validate_python(None, strict=True)
    except ValidationError:
        return False
    return True


def _annotation(node: ast.expr, name: str) -> Any:
    try:
        code = compile(ast.Expression(node), f"<parameter {name}>", "eval")
        return eval(code, {"__builtins__": {}}, dict(_TYPE_NAMES))  # our own notebooks' types
    except Exception as exc:
        raise ParameterError(name, f"unsupported type annotation ({exc})") from None


def declarations(nb: NotebookNode) -> dict[str, Declared]:
    """The parameters the notebook declares, in order; ParameterError on a bad declaration."""
    cell = parameters_cell(nb)
    if cell is None:
        return {}
    out: dict[str, Declared] = {}
    for stmt in ast.parse(cell.source).body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            name, value, ann_node = stmt.target.id, stmt.value, stmt.annotation
        elif (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
              and isinstance(stmt.targets[0], ast.Name)):
            name, value, ann_node = stmt.targets[0].id, stmt.value, None
        else:
            continue  # imports and comments may sit in the cell too
        if _SECRET_NAME.search(name.lower()):
            raise ParameterError(name, "looks like a credential; secrets are never parameters "
                                       "(the kernel reads them from its environment)")
        try:
            default = ast.literal_eval(value) if value is not None else None
        except ValueError:
            raise ParameterError(name, "its default must be a literal") from None
        if ann_node is not None:
            annotation = _annotation(ann_node, name)
        else:
            annotation = Any if default is None else type(default)
        required = default is None and not _admits_none(annotation)
        out[name] = Declared(name, annotation, default, required)
    return out


def model_for(declared: Mapping[str, Declared]) -> type[BaseModel]:
    fields: dict[str, Any] = {
        d.name: (d.annotation, ... if d.required else d.default) for d in declared.values()
    }
    return create_model(  # type: ignore[call-overload]
        "NotebookParameters", __config__=ConfigDict(extra="forbid", strict=True), **fields
    )


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield f"{path}.{k}", k
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")


def _check_data(name: str, value: Any, secrets: list[str]) -> None:
    for path, item in _walk(value, name):
        if isinstance(item, dict) and not all(isinstance(k, str) for k in item):
            raise ParameterError(path, "object keys must be strings")
        if not isinstance(item, str | int | float | bool | dict | list | type(None)):
            raise ParameterError(path, f"{type(item).__name__} is not JSON data")
        if isinstance(item, str) and any(s in item for s in secrets):
            raise ParameterError(path, "contains a secret value; secrets are never parameters")


def _error(exc: ValidationError, prefix: str = "") -> ParameterError:
    err = exc.errors()[0]
    where = prefix + ".".join(str(p) for p in err["loc"])
    problem = "missing (required)" if err["type"] == "missing" else err["msg"]
    return ParameterError(where, problem)


def _check_run_info(value: Any, requires: Iterable[tuple[str, str]]) -> None:
    """The run info must be a `RunInfo`, and hold every input the step requires."""
    try:
        info = RunInfo.of(value)
    except ValidationError as exc:
        raise _error(exc, f"{RUN_INFO}.") from None
    have = info.inputs or {}
    missing = [f"{s}.{n}" for s, n in requires if n not in have.get(s, {})]
    if missing:
        raise ParameterError("inputs", f"missing (required): {', '.join(missing)}; no "
                                       "earlier step of this run produced it")


def validate(
    nb: NotebookNode,
    parameters: Mapping[str, Any],
    *,
    offered: Mapping[str, Any] | None = None,
    secrets: Iterable[str] = (),
    requires: Iterable[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The values to inject: `parameters` (each must be declared) plus those of `offered`
    (the run info and stage) that the notebook declares, validated against the
    declarations. `requires` names the inputs (step, output) the step cannot run without:
    they must be in the run info's `inputs`."""
    declared = declarations(nb)
    given = {k: v for k, v in (offered or {}).items() if k in declared and v is not None}
    given.update(parameters)
    for name in given:
        if name not in declared:
            known = ", ".join(declared) or "none"
            raise ParameterError(name, f"unknown; the notebook declares: {known}")
    secret_values = [s for s in secrets if s]
    for name, value in given.items():
        _check_data(name, value, secret_values)
    try:
        model = model_for(declared).model_validate(given)
    except ValidationError as exc:
        raise _error(exc) from None
    values = model.model_dump()
    if RUN_INFO in declared:
        _check_run_info(values.get(RUN_INFO), tuple(requires))
    elif requires:
        raise ParameterError(RUN_INFO, "not declared, but the step requires inputs "
                                       "(declare `aisci: dict[str, Any] | None = None`)")
    return {k: values[k] for k in given}
