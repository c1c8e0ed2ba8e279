"""The optional model pass over the figures (role "plot"): which to keep, and does each
agree with its data. The model sees each figure's numbers (and, with a vision model, its
PNG); its answer is validated, and it can only drop figures, never invent one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pydantic import BaseModel, Field, ValidationError

from ..jsonreply import parse_json_reply
from ..llm import LLM, Message
from .figures import Figure

SYSTEM = ("You select and check the figures of a research paper. Answer with JSON only: "
          '{"keep": [figure names], "checks": [{"figure": name, "ok": bool, "note": str}]}.')


class Check(BaseModel):
    figure: str
    ok: bool
    note: str = ""


class Selection(BaseModel):
    keep: list[str] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)


@dataclass
class Outcome:
    kept: list[Figure]
    dropped: dict[str, str] = field(default_factory=dict)  # name -> why
    notes: dict[str, str] = field(default_factory=dict)


def prompt(figures: list[Figure], title: str) -> str:
    listed = [{"name": f.name, "caption": f.caption, "data": f.data} for f in figures]
    return (f"Select and check the figures for the paper \"{title}\".\n"
            f"Figures:\n{json.dumps(listed, indent=1)}")


def select_figures(llm: LLM | None, figures: list[Figure], title: str) -> Outcome:
    """Without a model every figure is kept. A figure the model rejects (not kept, or its
    check failed) is dropped with the model's reason; if it would drop them all, keep all:
    a paper without figures is worse than an unchecked one."""
    if llm is None or not figures:
        return Outcome(list(figures))
    reply = llm.chat("plot", [Message("system", SYSTEM), Message("user", prompt(figures, title))],
                     json_output=True)
    try:
        answer = Selection.model_validate(parse_json_reply(reply.text))
    except (ValueError, ValidationError) as exc:
        return Outcome(list(figures), notes={"*": f"model answer ignored: {exc}"[:300]})
    known = {f.name for f in figures}
    failed = {c.figure: c.note or "check failed" for c in answer.checks
              if not c.ok and c.figure in known}
    keep = set(answer.keep) & known if answer.keep else known
    dropped = {n: failed.get(n, "not selected") for n in known if n not in keep or n in failed}
    kept = [f for f in figures if f.name not in dropped]
    if not kept:
        return Outcome(list(figures), notes={"*": "model dropped every figure; kept all"})
    notes = {c.figure: c.note for c in answer.checks if c.figure in known and c.note}
    return Outcome(kept, dropped, notes)
