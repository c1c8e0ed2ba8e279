"""The paper's text from the model (role "writeup"), and the LaTeX body around it: the
sections it wrote, plus the figures and the results table we build from the data (the
numbers in the paper come from the run, not from the model)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from ..jsonreply import parse_json_reply
from ..llm import LLM, Message
from .citations import Paper
from .latex import WriteupError, escape

SYSTEM = ("You write concise machine learning papers in LaTeX. Answer with JSON only: "
          '{"title": str, "abstract": str, "sections": [{"heading": str, "body": LaTeX}]}. '
          "Cite with \\cite{key} using only the keys given; refer to figures as "
          "Figure~\\ref{fig:NAME} and to the results table as Table~\\ref{tab:results}.")
WIDE = {"training_curves"}


class Section(BaseModel):
    heading: str = Field(min_length=1, max_length=120)
    body: str = Field(min_length=1)


class Draft(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    abstract: str = Field(min_length=1)
    sections: list[Section] = Field(min_length=3)


@dataclass(frozen=True)
class FigureRef:
    name: str
    file: str  # relative to the LaTeX directory
    caption: str


def prompt(idea: dict[str, Any], results: list[dict[str, Any]], figures: list[FigureRef],
           papers: dict[str, Paper]) -> str:
    refs = {k: f"{p.title} ({p.year})" for k, p in papers.items()}
    figs = {f"fig:{f.name}": f.caption for f in figures}
    return ("Write the paper for this research idea.\n"
            f"Idea: {json.dumps(idea, indent=1)}\n"
            f"Results per stage (best node): {json.dumps(results, indent=1)}\n"
            f"Figures: {json.dumps(figs, indent=1)}\n"
            f"Citation keys: {json.dumps(refs, indent=1)}")


def write_draft(llm: LLM, idea: dict[str, Any], results: list[dict[str, Any]],
                figures: list[FigureRef], papers: dict[str, Paper]) -> Draft:
    reply = llm.chat("writeup", [Message("system", SYSTEM),
                                 Message("user", prompt(idea, results, figures, papers))],
                     json_output=True)
    try:
        return Draft.model_validate(parse_json_reply(reply.text))
    except (ValueError, ValidationError) as exc:
        raise WriteupError(f"the writeup model's draft is not a paper: {exc}"[:600]) from None


def figure_env(fig: FigureRef) -> str:
    width = r"\linewidth" if fig.name in WIDE else r"0.62\linewidth"
    return ("\\begin{figure}[t]\n\\centering\n"
            f"\\includegraphics[width={width}]{{{fig.file}}}\n"
            f"\\caption{{{escape(fig.caption)}}}\n\\label{{fig:{fig.name}}}\n\\end{{figure}}\n")


def results_table(results: list[dict[str, Any]]) -> str:
    if not results:
        return ""
    metric = escape(str(results[0]["metric"]).replace("_", " "))
    rows = "\n".join(
        f"{escape(r['stage'].replace('_', ' '))} & {escape(r['goal'])} & "
        f"{r['mean']:.3f} $\\pm$ {r['std']:.3f} & {r['seeds']} \\\\" for r in results)
    return ("\\begin{table}[t]\n\\centering\n\\caption{Best node of each stage: " + metric +
            " (mean $\\pm$ std over seeds).}\n\\label{tab:results}\n"
            "\\begin{tabular}{llcc}\n\\toprule\nStage & Goal & " + metric + " & Seeds \\\\\n"
            "\\midrule\n" + rows + "\n\\bottomrule\n\\end{tabular}\n\\end{table}\n")


_RESULTS = re.compile(r"result|experiment|evaluation", re.IGNORECASE)


def body(draft: Draft, figures: list[FigureRef], table: str) -> str:
    """Sections in order; each float goes into the first section that refers to it, else
    into the results section (or the second to last one)."""
    home = next((i for i, s in enumerate(draft.sections) if _RESULTS.search(s.heading)),
                max(0, len(draft.sections) - 2))
    floats: dict[int, list[str]] = {}
    items = [(f"fig:{f.name}", figure_env(f)) for f in figures]
    if table:
        items.append(("tab:results", table))
    for label, env in items:
        where = next((i for i, s in enumerate(draft.sections) if label in s.body), home)
        floats.setdefault(where, []).append(env)
    out = []
    for i, s in enumerate(draft.sections):
        out.append(f"\\section{{{escape(s.heading)}}}\n{s.body.strip()}\n")
        out.extend(floats.get(i, []))
    return "\n".join(out)
