"""The research idea a run carries, in AI-Scientist form, validated before it is queued."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InvalidIdea


class ExperimentConfig(BaseModel):
    """Knobs of the Stage_1 baseline experiment; bad values are refused at submission."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(0.05, gt=0, le=10)
    epochs: int = Field(60, ge=1, le=10_000)
    hidden: int = Field(16, ge=1, le=4096)
    samples: int = Field(512, ge=16, le=1_000_000)
    noise: float = Field(0.2, ge=0, le=5)
    seed: int = 0


class Idea(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(alias="Name", min_length=1)
    title: str = Field(alias="Title", min_length=1)
    short_hypothesis: str = Field(alias="Short Hypothesis", min_length=1)
    abstract: str = Field(alias="Abstract", min_length=1)
    experiments: str | list[str] | None = Field(None, alias="Experiments")
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)


def load_idea(path: Path) -> dict:
    """The idea file as a validated JSON object (original keys kept), or InvalidIdea."""
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise InvalidIdea(f"{path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise InvalidIdea(f"{path}: not JSON (line {exc.lineno}: {exc.msg})") from None
    return validate_idea(raw, where=str(path))


def validate_idea(raw: object, where: str = "idea") -> dict:
    if not isinstance(raw, dict):
        raise InvalidIdea(f"{where}: must be a JSON object")
    try:
        Idea.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise InvalidIdea(f"{where}: {field}: {err['msg']}") from None
    return raw


EXAMPLE_IDEA_PATH = Path(__file__).parent.parent / "examples" / "idea.json"


def example_idea() -> dict:
    """The sample idea the demo submits and the notebooks use as their default."""
    return load_idea(EXAMPLE_IDEA_PATH)
