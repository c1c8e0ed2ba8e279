"""The tolerant reader: an event with a valid envelope is kept even when a data field is not.

Pods already in the field send what the catalogue does not expect: a metric as a
description string (`"best_metric": "loss=0.0184"`), `null` for "no metric yet", a
placeholder `sha256`. Refusing the event would lose it and the progress it carries, so a
field that fails validation is kept as sent in the stored event, named in a warning, and
left out of what the projection reads; a metric string also gives its number to the numeric
series. What the read model's keys and its safety rules hang on stays strict: ids, stage
names, artifact keys, and every field of an event that changes a run's status.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError, create_model

from ..errors import UnknownEventType
from .catalog import CATALOG, StageNameRe

STRICT_TYPES = frozenset({
    "ai.run.started", "ai.run.completed", "ai.run.failed", "ai.run.canceled",
    "ai.run.status_changed", "ai.validation.auto_started", "ai.validation.auto_completed",
})
STRICT_FIELDS = frozenset({"run_id", "hypothesis_id", "request_id", "stage", "node_id", "key",
                           "name"})
METRIC_FIELDS = frozenset({"metric", "best_metric", "value"})
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


class Read(NamedTuple):  # a tuple: built once per event on the ingest's hot path
    data: dict[str, Any]  # what validates: the projection reads this
    warnings: tuple[tuple[str, str], ...] = ()  # (field, reason) of each field not used


# type -> the data model's strict validator, and the types whose model has no `stage`.
_STRICT = {t: spec.data.__pydantic_validator__ for t, spec in CATALOG.items()}
_UNDECLARED_STAGE = frozenset(t for t, spec in CATALOG.items()
                              if "stage" not in spec.data.model_fields)


def metric_number(text: str) -> float | None:
    """The number in a metric description: `"loss=0.0184"` -> 0.0184, `"0.5"` -> 0.5."""
    tail = text.rsplit("=", 1)[-1].strip()
    try:
        return float(tail)
    except ValueError:
        match = _NUMBER.search(tail)
        return float(match.group()) if match else None


@cache
def _lenient(model: type[BaseModel]) -> type[BaseModel]:
    """The same model with every field but the strict ones optional."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name in STRICT_FIELDS or info.is_required() is False:
            continue
        fields[name] = (info.annotation | None, None)
    return create_model(f"Lenient{model.__name__}", __base__=model, **fields)


def _word(err: dict) -> str:
    where = ".".join(str(p) for p in err["loc"]) or "data"
    return f"data.{where}: {err['msg']}"


def read_data(event_type: str, sent: object) -> Read:
    """Validated `data` for the projection, with a warning per field it cannot use.

    Raises ValueError for an unknown type, a non-object, or a strict field that fails.
    """
    strict = _STRICT.get(event_type)
    if strict is None:
        raise UnknownEventType(f"unknown event type {event_type!r}")
    if not isinstance(sent, dict):
        raise ValueError("data must be a JSON object")
    try:  # the common case, cheaply: exactly typed data is used as sent, less its nulls
        strict.validate_python(sent, strict=True)
    except ValidationError:
        pass
    else:
        data = {k: v for k, v in sent.items() if v is not None} if None in sent.values() \
            else sent
        return _checked_extras(event_type, data, [])
    spec = CATALOG[event_type]
    try:
        model = spec.data.model_validate(sent)
        return _checked_extras(event_type, model.model_dump(by_alias=True, exclude_none=True),
                               [])
    except ValidationError as exc:
        errors = exc.errors()
    if event_type in STRICT_TYPES:
        raise ValueError(_word(errors[0]))
    usable = dict(sent)
    warnings: list[tuple[str, str]] = []
    warned: set[str] = set()
    for _ in range(3):
        for err in errors:
            field = str(err["loc"][0]) if err["loc"] else ""
            if not field or field in STRICT_FIELDS:
                raise ValueError(_word(err))
            value = usable.pop(field, None)
            if field in warned:
                continue  # its parsed number failed too: left out
            warned.add(field)
            if field in METRIC_FIELDS and value is None:
                warnings.append((field, "null: no metric yet"))
            elif field in METRIC_FIELDS and isinstance(value, str):
                usable.setdefault(f"{field}_description", value)
                number = metric_number(value)
                if number is not None:
                    usable[field] = number
                warnings.append((field, "a description string: kept as "
                                 f"{field}_description" + (f", number {number} used"
                                                           if number is not None else "")))
            else:
                warnings.append((field, f"{err['msg']}; kept as sent, not used"))
        try:
            model = _lenient(spec.data).model_validate(usable)
            break
        except ValidationError as exc:
            errors = exc.errors()
    else:
        raise ValueError(_word(errors[0]))
    return _checked_extras(event_type,
                           model.model_dump(by_alias=True, exclude_none=True), warnings)


def _checked_extras(event_type: str, data: dict[str, Any],
                    warnings: list[tuple[str, str]]) -> Read:
    """A `stage` the type does not declare is still read by the projection: drop a bad one."""
    if "stage" not in data or event_type not in _UNDECLARED_STAGE:
        return Read(data, tuple(warnings))
    stage = data.get("stage")
    if stage is not None and not (isinstance(stage, str) and StageNameRe.match(stage)):
        data = {k: v for k, v in data.items() if k != "stage"}
        warnings.append(("stage", "not a stage name; kept as sent, not used"))
    return Read(data, tuple(warnings))
