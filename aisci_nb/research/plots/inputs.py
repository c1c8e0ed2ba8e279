"""The stages' results as the plots step reads them (the journal contract of PLAN.md).

Validated on load so a malformed journal is one clear error naming the file, not a
KeyError deep inside a figure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

STAGES = ("Stage_1", "Stage_2", "Stage_3", "Stage_4")
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples" / "stages"


class InvalidStageOutput(ValueError):
    """A stage's journal or experiment data does not follow the contract."""


class Metric(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    value: float | None = None
    maximize: bool = True
    description: str = ""


class Seeds(BaseModel):
    model_config = ConfigDict(extra="allow")
    values: list[float] = Field(default_factory=list)
    mean: float
    std: float


class Node(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    parent_id: str | None = None
    is_buggy: bool = False
    metric: Metric | None = None
    seeds: Seeds | None = None


class Journal(BaseModel):
    model_config = ConfigDict(extra="allow")
    stage: str
    goal: str = ""
    best_node_id: str | None = None
    nodes: list[Node] = Field(default_factory=list)

    def best(self) -> Node | None:
        return next((n for n in self.nodes if n.id == self.best_node_id), None)


class ExperimentData(BaseModel):
    model_config = ConfigDict(extra="allow")
    metrics: dict[str, float] = Field(default_factory=dict)
    series: dict[str, list[float]] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    sweeps: dict[str, dict[str, float]] = Field(default_factory=dict)
    ablations: dict[str, float] = Field(default_factory=dict)


@dataclass(frozen=True)
class StageResult:
    stage: str
    journal: Journal
    data: ExperimentData

    @property
    def best(self) -> Node | None:
        return self.journal.best()


def _load(model: type[BaseModel], path: Path) -> Any:
    try:
        return model.model_validate(json.loads(Path(path).read_text()))
    except OSError as exc:
        raise InvalidStageOutput(f"{path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise InvalidStageOutput(f"{path}: not JSON (line {exc.lineno}: {exc.msg})") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidStageOutput(f"{path}: {where}: {err['msg']}") from None


def load_stage(stage: str, journal: Path, best_data: Path) -> StageResult:
    return StageResult(stage, _load(Journal, journal), _load(ExperimentData, best_data))


def example_paths(stage: str) -> tuple[Path, Path]:
    """The fixture outputs shipped with the package: plots run standalone in JupyterLab."""
    return EXAMPLES_DIR / stage / "journal.json", EXAMPLES_DIR / stage / "experiment_data.json"


def load_stages(paths: dict[str, tuple[Path, Path]]) -> list[StageResult]:
    """Stages in contract order; a stage without outputs is skipped (an early failure)."""
    return [load_stage(s, *paths[s]) for s in STAGES if s in paths]
