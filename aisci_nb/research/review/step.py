"""The Review step: the paper in; the review out, and the run on to AWAITING_HUMAN (the
worker moves the status; the events say the same for the read model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..llm import LLM
from .form import RUBRIC_VERSION
from .reviewer import ReviewResult, read_pdf, review_paper


def paper_path(ctx: Any, llm: LLM, scratch: Path) -> Path:
    """The Writeup step's PDF; on its own, a paper built from the packaged example."""
    if ctx.inputs:
        return ctx.input("Writeup", "paper")
    from ...contract.idea import example_idea
    from ..writeup import build_paper, example_manifest
    from ..writeup.citations import RecordedSearch

    ctx.log("no run inputs: reviewing a paper built from the packaged example", level="warn")
    manifest = example_manifest(scratch / "figures")
    paper = build_paper(llm, example_idea(), json.loads(manifest.read_text()), manifest.parent,
                        scratch / "latex", RecordedSearch())
    return paper.pdf


def run_review(ctx: Any, llm: LLM, out: Path, *, reviewers: int = 1,
               pass_threshold: int = 5) -> ReviewResult:
    out.mkdir(parents=True, exist_ok=True)
    pdf = paper_path(ctx, llm, out / "example")
    _, model = llm.route("review")
    ctx.events.emit("ai.validation.auto_started", model=model, rubric_version=RUBRIC_VERSION)
    result = review_paper(llm, read_pdf(pdf), reviewers=reviewers,
                          pass_threshold=pass_threshold)
    path = out / "review.json"
    path.write_text(json.dumps(result.to_json(), indent=1))
    ctx.register_artifact(path, kind="review", name="review")
    for name, value in result.scores.items():
        ctx.metric(f"review_{name.lower()}", value)
    ctx.events.emit("ai.validation.auto_completed", verdict=result.verdict,
                    scores=result.scores, notes=result.meta.summary[:2000])
    return result
