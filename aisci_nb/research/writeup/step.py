"""The Writeup step: the Plots manifest in, the paper (PDF) and its LaTeX sources out."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

from ...contract.idea import example_idea
from ..llm import LLM
from ..plots import MANIFEST, STAGES, example_paths, load_stages, make_figures
from ..plots.step import summarize
from .citations import LiteratureSearch, RecordedSearch
from .latex import JOB
from .paper import PaperResult, build_paper


def example_manifest(out: Path) -> Path:
    """Figures and results of the packaged example stages: the step runs on its own."""
    stages = load_stages({s: example_paths(s) for s in STAGES})
    figures = make_figures(stages, out)
    path = out / MANIFEST
    path.write_text(json.dumps({"stages": [s.stage for s in stages],
                                "results": summarize(stages),
                                "figures": [f.to_json() for f in figures]}, indent=1))
    return path


def manifest_path(ctx: Any, scratch: Path) -> Path:
    if not ctx.inputs:
        ctx.log("no run inputs: using figures of the packaged example stages", level="warn")
        return example_manifest(scratch)
    return ctx.input("Plots", "figures")


def pack_sources(latex_dir: Path, dest: Path) -> Path:
    """The LaTeX sources (tex, bib, figures, logs) as one archive: rebuildable anywhere."""
    with tarfile.open(dest, "w:gz") as tar:
        for path in sorted(latex_dir.iterdir()):
            if path.suffix in {".tex", ".bib", ".png", ".pdf", ".log", ".blg", ".bbl", ".json"}:
                tar.add(path, arcname=f"latex/{path.name}")
    return dest


def run_writeup(ctx: Any, llm: LLM, out: Path, *, page_limit: int = 8, max_fixes: int = 3,
                search: LiteratureSearch | None = None, timeout_s: float = 60) -> PaperResult:
    out.mkdir(parents=True, exist_ok=True)
    manifest = manifest_path(ctx, out / "example-figures")
    idea = ctx.idea or example_idea()
    ctx.events.emit("ai.paper.started")
    latex_dir = out / "latex"
    try:
        paper = build_paper(llm, idea, json.loads(manifest.read_text()), manifest.parent,
                            latex_dir, search or RecordedSearch(), page_limit=page_limit,
                            max_fixes=max_fixes, timeout_s=timeout_s)
    finally:  # a failed paper's sources are what one debugs it with
        if (latex_dir / f"{JOB}.tex").exists():
            ctx.register_artifact(pack_sources(latex_dir, out / "latex.tar.gz"), kind="latex",
                                  name="latex")
    stored = ctx.register_artifact(paper.pdf, kind="paper", name="paper")
    ctx.events.emit("ai.paper.generated", artifact_key=stored.key, word_count=paper.words)
    ctx.metric("pages", paper.pages)
    ctx.metric("words", paper.words)
    ctx.metric("latex_fixes", len(paper.fixes))
    return paper
