"""The automatic review of the paper: its text (pdftotext) and a list of its figures
(pdfimages) go to the review model; one reviewer or an ensemble with a meta-review.

An invalid answer (not JSON, a score out of range) is sent back once with the validation
error; a second invalid answer fails the step, naming what was wrong."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from ..jsonreply import parse_json_reply
from ..llm import LLM, Message
from .form import FORM_TEXT, SCORES, Review

SYSTEM = ("You are an experienced, fair machine learning reviewer for NeurIPS. Be critical: "
          "an unclear or unsupported claim lowers the scores. " + FORM_TEXT)
MAX_TEXT = 60_000


class ReviewError(RuntimeError):
    pass


@dataclass(frozen=True)
class PaperText:
    text: str
    figures: int  # raster images embedded (pdfimages -list, masks excluded)
    pages: int


def read_pdf(pdf: Path, timeout_s: float = 60) -> PaperText:
    def run(*cmd: str) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                                  timeout=timeout_s, check=True)
        except FileNotFoundError:
            raise ReviewError(f"{cmd[0]} not found: apt-get install -y poppler-utils") from None
        except subprocess.CalledProcessError as exc:
            raise ReviewError(f"{cmd[0]} could not read {pdf}: {exc.stderr.strip()}") from None
        return done.stdout

    text = run("pdftotext", "-layout", str(pdf), "-")
    images = [ln.split() for ln in run("pdfimages", "-list", str(pdf)).splitlines()[2:]]
    info = dict(ln.split(":", 1) for ln in run("pdfinfo", str(pdf)).splitlines() if ":" in ln)
    return PaperText(text, sum(1 for row in images if len(row) > 2 and row[2] == "image"),
                     int(info.get("Pages", "0").strip() or 0))


@dataclass
class ReviewResult:
    reviews: list[Review]
    meta: Review
    verdict: str  # pass | fail
    scores: dict[str, float]
    model: str
    attempts: list[str] = field(default_factory=list)  # validation errors sent back

    def to_json(self) -> dict:
        return {"verdict": self.verdict, "scores": self.scores, "model": self.model,
                "meta": self.meta.model_dump(by_alias=True),
                "reviews": [r.model_dump(by_alias=True) for r in self.reviews],
                "invalid_answers": self.attempts}


def _problem(exc: ValueError) -> str:
    """A validation error as one line per field: what a model (and a person) can act on."""
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e['input']!r})"
                         for e in exc.errors())[:800]
    return str(exc)[:800]


def _ask(llm: LLM, messages: list[Message], errors: list[str]) -> tuple[Review, str]:
    for attempt in range(2):
        reply = llm.chat("review", messages, json_output=True)
        try:
            return Review.model_validate(parse_json_reply(reply.text)), reply.model
        except ValueError as exc:  # not JSON, or a ValidationError
            error = _problem(exc)
        errors.append(error)
        if attempt == 1:
            raise ReviewError(f"the review model's answer does not fit the form twice: {error}")
        messages = [*messages, reply.as_message(), Message(
            "user", f"That answer does not fit the form: {error}\nAnswer again, JSON only.")]
    raise AssertionError("unreachable")


def review_paper(llm: LLM, paper: PaperText, *, reviewers: int = 1,
                 pass_threshold: int = 5) -> ReviewResult:
    """`reviewers` independent reviews; with more than one, a meta-review decides. The
    verdict passes when the deciding review accepts and its Overall reaches the threshold."""
    ask = (f"Review the paper below ({paper.pages} pages, {paper.figures} embedded figures)."
           f"\n\n{paper.text[:MAX_TEXT]}")
    errors: list[str] = []
    reviews, model = [], ""
    for _ in range(reviewers):
        review, model = _ask(llm, [Message("system", SYSTEM), Message("user", ask)], errors)
        reviews.append(review)
    meta = reviews[0]
    if reviewers > 1:
        listed = json.dumps([r.model_dump(by_alias=True) for r in reviews], indent=1)
        meta, model = _ask(llm, [Message("system", SYSTEM), Message(
            "user", "Write the meta-review of these reviews as an area chair, in the same "
                    f"form, weighing their arguments:\n{listed}")], errors)
    scores = {name: round(sum(r.scores()[name] for r in reviews) / len(reviews), 2)
              for name in SCORES}
    scores["Decision"] = 1.0 if meta.decision == "Accept" else 0.0
    verdict = "pass" if meta.decision == "Accept" and meta.overall >= pass_threshold else "fail"
    return ReviewResult(reviews, meta, verdict, scores, model, errors)
