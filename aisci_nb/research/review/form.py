"""The NeurIPS review form, as a validated model: a score out of its range or a missing
field is refused, so a verdict is only ever built from a complete review."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RUBRIC_VERSION = "neurips-2024"
SCORES = ("Originality", "Quality", "Clarity", "Significance", "Soundness", "Presentation",
          "Contribution", "Overall", "Confidence")
FORM_TEXT = """Fill in the NeurIPS review form as JSON with exactly these keys:
"Summary" (str), "Strengths" (list of str), "Weaknesses" (list of str),
"Originality", "Quality", "Clarity", "Significance" (int 1-4: low, medium, high, very high),
"Questions" (list of str), "Limitations" (list of str), "Ethical Concerns" (bool),
"Soundness", "Presentation", "Contribution" (int 1-4: poor, fair, good, excellent),
"Overall" (int 1-10: 1 strong reject ... 6 weak accept ... 10 award quality),
"Confidence" (int 1-5), "Decision" ("Accept" or "Reject")."""



class Review(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    summary: str = Field(alias="Summary", min_length=1)
    strengths: list[str] = Field(alias="Strengths")
    weaknesses: list[str] = Field(alias="Weaknesses")
    originality: int = Field(alias="Originality", ge=1, le=4)
    quality: int = Field(alias="Quality", ge=1, le=4)
    clarity: int = Field(alias="Clarity", ge=1, le=4)
    significance: int = Field(alias="Significance", ge=1, le=4)
    questions: list[str] = Field(alias="Questions")
    limitations: list[str] = Field(alias="Limitations")
    ethical_concerns: bool = Field(alias="Ethical Concerns")
    soundness: int = Field(alias="Soundness", ge=1, le=4)
    presentation: int = Field(alias="Presentation", ge=1, le=4)
    contribution: int = Field(alias="Contribution", ge=1, le=4)
    overall: int = Field(alias="Overall", ge=1, le=10)
    confidence: int = Field(alias="Confidence", ge=1, le=5)
    decision: Literal["Accept", "Reject"] = Field(alias="Decision")

    def scores(self) -> dict[str, float]:
        return {name: float(getattr(self, name.lower())) for name in SCORES}
