"""Draft, compile, fix: the paper as a PDF, or a clear error saying why not.

A compile problem (a LaTeX error, an unresolved citation, reference or figure, too many
pages) goes back to the writeup model with the log excerpt, for a bounded number of
rounds; the model answers with find/replace edits to the source, which keeps recorded
(scripted) fixes small and makes every change visible."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from ..jsonreply import parse_json_reply
from ..llm import LLM, Message
from .citations import LiteratureSearch, bibtex, gather
from .draft import Draft, FigureRef, body, results_table, write_draft
from .latex import JOB, Compiled, WriteupError, compile_pdf, escape, log_excerpt, render

FIX_SYSTEM = ("You fix LaTeX papers. Answer with JSON only: "
              '{"edits": [{"find": exact text in the source, "replace": new text}]}.')


class Edit(BaseModel):
    find: str = Field(min_length=1)
    replace: str


class Fix(BaseModel):
    edits: list[Edit] = Field(default_factory=list)


@dataclass
class PaperResult:
    pdf: Path
    tex: Path
    title: str
    pages: int
    words: int
    sections: list[str]
    figures: list[str]
    citations: list[str]
    fixes: list[dict[str, Any]] = field(default_factory=list)  # one per round: problems, edits


def fix_prompt(source: str, problems: list[str], excerpt: str) -> str:
    return ("The LaTeX paper below does not compile cleanly. Fix the LaTeX error(s).\n"
            "Problems:\n- " + "\n- ".join(problems) + f"\nLog excerpt:\n{excerpt}\n"
            f"Source ({JOB}.tex):\n{source}")


def apply_edits(source: str, fix: Fix) -> tuple[str, list[str]]:
    """The edited source and the edits that did not match (reported, not fatal)."""
    unmatched = []
    for edit in fix.edits:
        if edit.find in source:
            source = source.replace(edit.find, edit.replace)
        else:
            unmatched.append(edit.find[:80])
    return source, unmatched


def pdf_words(pdf: Path) -> int:
    text = subprocess.run(["pdftotext", "-q", str(pdf), "-"], capture_output=True, text=True,
                          errors="replace", timeout=60, check=False).stdout
    return len(text.split())


def problems_of(compiled: Compiled, page_limit: int) -> list[str]:
    found = compiled.problems()
    if compiled.ok and compiled.pages is not None and compiled.pages > page_limit:
        found.append(f"the paper has {compiled.pages} pages; the limit is {page_limit}: "
                     "shorten it")
    if compiled.pdf is None and not found:
        found.append("no PDF was written")
    return found


def build_paper(
    llm: LLM, idea: dict[str, Any], manifest: dict[str, Any], figures_dir: Path, out: Path,
    search: LiteratureSearch, *, page_limit: int = 8, max_fixes: int = 3,
    timeout_s: float = 60, authors: str = "aisci (automated research)",
) -> PaperResult:
    """The compiled paper under `out/`; WriteupError when it cannot be made to compile."""
    out.mkdir(parents=True, exist_ok=True)
    title = str(idea.get("Title") or manifest.get("title") or "Untitled")
    papers = gather(llm, search, title, str(idea.get("Abstract", "")))
    bib, keyed = bibtex(papers)
    (out / "references.bib").write_text(bib)
    figures = []
    for f in manifest.get("figures", []):
        shutil.copy(figures_dir / f["png"], out / f["png"])
        figures.append(FigureRef(f["name"], f["png"], f["caption"]))
    results = manifest.get("results", [])
    draft: Draft = write_draft(llm, idea, results, figures, keyed)
    source = render(escape(draft.title), escape(authors), draft.abstract,
                    body(draft, figures, results_table(results)))
    tex = out / f"{JOB}.tex"
    fixes: list[dict[str, Any]] = []
    for round_ in range(max_fixes + 1):
        tex.write_text(source)
        compiled = compile_pdf(out, timeout_s)
        problems = problems_of(compiled, page_limit)
        if not problems:
            break
        if round_ == max_fixes:
            raise WriteupError(
                f"the paper still does not compile after {max_fixes} fix round(s) by the "
                f"writeup model: {'; '.join(problems)[:800]}. Source: {tex}; log: "
                f"{out / (JOB + '.log')}\n{log_excerpt(compiled.log, 1200)}")
        reply = llm.chat("writeup", [Message("system", FIX_SYSTEM), Message(
            "user", fix_prompt(source, problems, log_excerpt(compiled.log)))], json_output=True)
        try:
            fix = Fix.model_validate(parse_json_reply(reply.text))
        except (ValueError, ValidationError) as exc:
            fix = Fix()
            fixes.append({"problems": problems, "error": str(exc)[:300]})
            continue
        source, unmatched = apply_edits(source, fix)
        fixes.append({"problems": problems, "edits": len(fix.edits), "unmatched": unmatched})
    assert compiled.pdf is not None and compiled.pages is not None
    (out / "fixes.json").write_text(json.dumps(fixes, indent=1))
    return PaperResult(compiled.pdf, tex, draft.title, compiled.pages, pdf_words(compiled.pdf),
                       [s.heading for s in draft.sections], [f.name for f in figures],
                       sorted(keyed), fixes)
