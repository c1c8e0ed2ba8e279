"""The research idea ideation produces, in AI-Scientist form: seven fields, validated.

The model answers with JSON that we do not control; `parse_idea` turns any answer (an
object, a JSON string, a fenced ```json block) into a `ResearchIdea` or one line saying what
is wrong, which goes back to the model as the reason to retry.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

_FENCED = re.compile(r"```(?:json)?\s*(\{.*\})\s*```", re.DOTALL)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")


def _text(value: Any) -> Any:
    """Models sometimes list experiments or risks; one text is what the paper step reads."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(f"- {v}" for v in value)
    return value


class ResearchIdea(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", str_strip_whitespace=True)

    name: str = Field(alias="Name", description="lowercase_with_underscores identifier")
    title: str = Field(alias="Title", min_length=5, max_length=300)
    short_hypothesis: str = Field(alias="Short Hypothesis", min_length=10)
    related_work: str = Field(alias="Related Work", min_length=10)
    abstract: str = Field(alias="Abstract", min_length=50)
    experiments: str = Field(alias="Experiments", min_length=10)
    risk_factors: str = Field(alias="Risk Factors and Limitations", min_length=10)

    @field_validator("name")
    @classmethod
    def _snake_case(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be lowercase letters, digits and underscores (<= 64)")
        return value

    @field_validator("experiments", "risk_factors", "related_work", mode="before")
    @classmethod
    def _joined(cls, value: Any) -> Any:
        return _text(value)

    def as_json(self) -> dict[str, str]:
        """The idea with AI-Scientist's keys, as stored in `ideaJson`."""
        return self.model_dump(by_alias=True)


FIELDS = tuple(f.alias for f in ResearchIdea.model_fields.values())


class MalformedIdea(ValueError):
    """The model's answer is not a valid idea; the message says why, in one line."""


def parse_idea(raw: object) -> ResearchIdea:
    """A validated idea from a tool argument or a text answer, else MalformedIdea."""
    if isinstance(raw, str):
        text = raw.strip()
        fenced = _FENCED.search(text)
        if fenced:
            text = fenced.group(1)
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MalformedIdea(f"not JSON ({exc.msg} at line {exc.lineno} column "
                                f"{exc.colno})") from None
    if isinstance(raw, dict) and isinstance(raw.get("idea"), dict):
        raw = raw["idea"]  # {"idea": {...}}: the tool's own argument shape
    if not isinstance(raw, dict):
        raise MalformedIdea(f"expected a JSON object with the fields {', '.join(FIELDS)}; "
                            f"got {type(raw).__name__}")
    try:
        return ResearchIdea.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "idea"
            problems.append("missing field " + field if err["type"] == "missing"
                            else f"{field}: {err['msg']}")
        raise MalformedIdea("; ".join(problems)) from None
