"""Citations for the paper: the model proposes search queries (role "citations"), a
literature search answers them, and the papers found become BibTeX entries.

The search is any callable `search(query, limit) -> [paper]` whose papers have `title`,
`authors` (a list, or one comma-separated string), `year` and `venue`, so the ideation
step's Semantic Scholar client and recorded literature plug in as they are; offline,
`RecordedSearch` replays answers recorded here (Semantic Scholar's paper fields)."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, Field, ValidationError

from ..jsonreply import parse_json_reply
from ..llm import LLM, Message

RECORDED = Path(__file__).resolve().parent / "recorded_search.json"
SYSTEM = ('You find related work for a research paper. Answer with JSON only: '
          '{"queries": [short literature search queries]}.')


@dataclass(frozen=True)
class Paper:
    title: str
    authors: tuple[str, ...]
    year: int | None
    venue: str = ""
    url: str = ""

    @classmethod
    def from_s2(cls, raw: dict[str, Any]) -> Paper:
        """From a Semantic Scholar paper (`title`, `authors[].name`, `year`, `venue`)."""
        names = tuple(a["name"] if isinstance(a, dict) else str(a)
                      for a in raw.get("authors") or [])
        return cls(raw["title"], names, raw.get("year"), raw.get("venue") or "",
                   raw.get("url") or "")


class LiteratureSearch(Protocol):
    def __call__(self, query: str, limit: int = 10) -> list[Any]: ...


def as_paper(found: Any) -> Paper:
    """A paper from any search client (see the module docstring)."""
    if isinstance(found, Paper):
        return found
    authors = found.authors
    if isinstance(authors, str):
        authors = [a.strip() for a in authors.split(",") if a.strip()]
    return Paper(str(found.title), tuple(authors or ()), getattr(found, "year", None),
                 str(getattr(found, "venue", "") or ""), str(getattr(found, "url", "") or ""))


class RecordedSearch:
    """Recorded answers, `{"queries": {query: [paper, ...]}}`; an unknown query finds
    papers whose titles share its words (so a reworded query still finds something)."""

    def __init__(self, path: Path = RECORDED) -> None:
        self.answers: dict[str, list[dict[str, Any]]] = json.loads(path.read_text())["queries"]

    def __call__(self, query: str, limit: int = 5) -> list[Paper]:
        if query in self.answers:
            return [Paper.from_s2(p) for p in self.answers[query][:limit]]
        words = set(_words(query))
        seen: dict[str, dict[str, Any]] = {}
        for papers in self.answers.values():
            for p in papers:
                if words & set(_words(p["title"])):
                    seen.setdefault(p["title"], p)
        return [Paper.from_s2(p) for p in list(seen.values())[:limit]]


class Queries(BaseModel):
    queries: list[str] = Field(default_factory=list, max_length=10)


def gather(llm: LLM, search: LiteratureSearch, title: str, abstract: str,
           max_papers: int = 12) -> list[Paper]:
    """Papers to cite, deduplicated by title, in the order found."""
    reply = llm.chat("citations", [Message("system", SYSTEM), Message(
        "user", f"Find related work to cite for the paper \"{title}\".\nAbstract: {abstract}")],
        json_output=True)
    try:
        queries = Queries.model_validate(parse_json_reply(reply.text)).queries
    except (ValueError, ValidationError):
        queries = [title]
    found: dict[str, Paper] = {}
    for query in queries:
        for paper in map(as_paper, search(query, 5)):
            if paper.title:
                found.setdefault(paper.title.lower(), paper)
    return list(found.values())[:max_papers]


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 3]


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def cite_key(paper: Paper, taken: set[str]) -> str:
    """`lastnameYEARword`, made unique with a letter suffix."""
    last = _ascii(paper.authors[0].split()[-1]).lower() if paper.authors else "anon"
    word = next(iter(_words(paper.title)), "paper")
    base = re.sub(r"[^a-z0-9]", "", f"{last}{paper.year or ''}{word}") or "ref"
    key, n = base, 0
    while key in taken:
        n += 1
        key = f"{base}{chr(ord('a') + n - 1)}"
    taken.add(key)
    return key


def _bib_escape(text: str) -> str:
    return re.sub(r"([&%$#_])", r"\\\1", _ascii(text)).replace("{", "").replace("}", "")


def bibtex(papers: list[Paper]) -> tuple[str, dict[str, Paper]]:
    """The .bib text and its keys."""
    taken: set[str] = set()
    entries, keyed = [], {}
    for p in papers:
        key = cite_key(p, taken)
        keyed[key] = p
        fields = {"title": "{" + _bib_escape(p.title) + "}",
                  "author": " and ".join(_bib_escape(a) for a in p.authors) or "Anonymous",
                  "year": str(p.year or ""), "journal": _bib_escape(p.venue) or "arXiv preprint"}
        body = ",\n".join(f"  {k} = {{{v}}}" for k, v in fields.items() if v)
        entries.append(f"@article{{{key},\n{body}\n}}")
    return "\n\n".join(entries) + "\n", keyed
