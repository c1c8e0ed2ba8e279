"""Metrics come from the `experiment_data.json` the generated code saves, never from its
printed output: what the code prints is for people, what it saves is the result.

The file: `{"metrics": {name: float}, "series": {name: [float, ...]}, "config": {...}}`
(stage 2 adds `"sweeps"`, stage 4 `"ablations"`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import AisciError
from .journal import Metric


class MetricError(AisciError, ValueError):
    """The saved results are missing, unreadable, or lack a finite value of the metric."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class MetricSpec:
    name: str = "val_accuracy"
    maximize: bool = True
    description: str = "validation accuracy of the final model"

    def of(self, value: float | None) -> Metric:
        return Metric(self.name, value, self.maximize, self.description)


def load_data(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise MetricError("no_data", f"the code saved no {path.name}")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MetricError("bad_data", f"{path.name} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise MetricError("bad_data", f'{path.name} has no "metrics" object')
    return data


def parse_metric(data: dict[str, Any], spec: MetricSpec) -> Metric:
    """The spec's metric from saved results; a missing, non-numeric or non-finite value
    makes the node buggy."""
    value = data["metrics"].get(spec.name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        found = ", ".join(sorted(data["metrics"])) or "none"
        raise MetricError("bad_metric", f"metric {spec.name!r} missing or not a number "
                                        f"(saved metrics: {found})")
    if not math.isfinite(value):
        raise MetricError("bad_metric", f"metric {spec.name!r} is {value}")
    return spec.of(float(value))


def series(data: dict[str, Any], name: str) -> list[float]:
    values = (data.get("series") or {}).get(name) or []
    return [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]


def is_stable(values: list[float], window: int = 3, tol: float = 0.15) -> bool:
    """A curve has settled when its last `window` values lie within `tol` of their mean
    (relative), i.e. training converged rather than oscillated or diverged."""
    if len(values) < window:
        return False
    tail = values[-window:]
    if not all(math.isfinite(v) for v in tail):
        return False
    mean = sum(tail) / window
    return (max(tail) - min(tail)) <= tol * max(abs(mean), 1e-8)


def mean_std(values: list[float]) -> dict[str, Any]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"values": values, "mean": mean, "std": std}
