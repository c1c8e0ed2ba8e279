"""Literature search for the ideation model: Semantic Scholar, or recorded results offline.

Semantic Scholar's public API is shared and rate limited (about one request a second
without a key). We space our requests, retry a 429 (honouring `Retry-After`) and server
errors with exponential backoff, and when that is spent raise `LiteratureUnavailable`: the
conversation then goes on without the search and says so with a warning, it does not fail.
Offline (a scripted model, or `LITERATURE_SOURCE=recorded`) the recorded results shipped
with the package answer instead, deterministically and without a network.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

RECORDED_DIR = Path(__file__).resolve().parent / "recorded"
DEFAULT_S2_URL = "https://api.semanticscholar.org/graph/v1"
FIELDS = "title,authors,venue,year,abstract,citationCount"
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset({"a", "an", "and", "are", "as", "at", "by", "for", "from", "in", "is", "of",
                   "on", "or", "the", "to", "with", "via"})


class LiteratureUnavailable(RuntimeError):
    """The search could not be done (rate limited, down); ideation goes on without it."""


@dataclass(frozen=True)
class Paper:
    title: str
    authors: str = ""
    venue: str = ""
    year: int | None = None
    citations: int | None = None
    abstract: str = ""

    @classmethod
    def from_s2(cls, raw: dict[str, Any]) -> Paper:
        names = [a.get("name", "") for a in raw.get("authors") or []]
        return cls(title=raw.get("title") or "", authors=", ".join(n for n in names if n),
                   venue=raw.get("venue") or "", year=raw.get("year"),
                   citations=raw.get("citationCount"), abstract=raw.get("abstract") or "")


class Search(Protocol):
    def __call__(self, query: str, limit: int = 10) -> list[Paper]: ...


def format_papers(papers: list[Paper]) -> str:
    """The tool result the model reads: numbered, abstracts shortened."""
    if not papers:
        return "No papers found."
    lines = []
    for i, p in enumerate(papers, 1):
        head = f"{i}: {p.title}. {p.authors} ({p.venue or 'n/a'}, {p.year or 'n.d.'})"
        cites = f"; {p.citations} citations" if p.citations is not None else ""
        abstract = p.abstract if len(p.abstract) <= 600 else p.abstract[:600] + "..."
        lines.append(f"{head}{cites}\n   {abstract or 'No abstract available.'}")
    return "\n".join(lines)


class _Retryable(Exception):
    def __init__(self, response: httpx.Response | None, reason: str) -> None:
        super().__init__(reason)
        self.response = response


class SemanticScholar:
    """`GET /paper/search` with an optional `x-api-key`, spaced and retried."""

    def __init__(self, base_url: str = DEFAULT_S2_URL, api_key: str | None = None, *,
                 max_attempts: int = 4, backoff_s: float = 2.0, max_wait_s: float = 30.0,
                 min_interval_s: float | None = None, timeout_s: float = 20.0,
                 client: httpx.Client | None = None) -> None:
        headers = {"x-api-key": api_key} if api_key else {}
        self.client = client or httpx.Client(base_url=base_url.rstrip("/"), headers=headers,
                                             timeout=timeout_s)
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        # The shared pool allows about 1 request/s without a key; a key is allowed more.
        self.min_interval_s = (1.0 if not api_key else 0.1) if min_interval_s is None \
            else min_interval_s
        self._last = 0.0
        self._lock = threading.Lock()

    def _space(self) -> None:
        with self._lock:
            wait = self._last + self.min_interval_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last = time.monotonic()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        response = getattr(exc, "response", None)
        after = response.headers.get("retry-after") if response is not None else None
        if after and after.replace(".", "", 1).isdigit():
            return min(float(after), self.max_wait_s)
        return min(self.backoff_s * 2 ** (state.attempt_number - 1), self.max_wait_s)

    def _get(self, query: str, limit: int) -> dict[str, Any]:
        self._space()
        try:
            response = self.client.get("/paper/search", params={
                "query": query, "limit": limit, "fields": FIELDS})
        except httpx.TransportError as exc:
            raise _Retryable(None, f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(response, f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise LiteratureUnavailable(f"Semantic Scholar refused the search: HTTP "
                                        f"{response.status_code} {response.text[:200]}")
        return response.json()

    def __call__(self, query: str, limit: int = 10) -> list[Paper]:
        retrying = Retrying(retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
                            stop=stop_after_attempt(self.max_attempts), wait=self._wait,
                            reraise=True)
        try:
            body = retrying(self._get, query, limit)
        except _Retryable as exc:
            raise LiteratureUnavailable(
                f"Semantic Scholar unavailable after {self.max_attempts} attempts "
                f"({exc}); going on without literature search") from None
        except ValueError as exc:  # not JSON
            raise LiteratureUnavailable(f"Semantic Scholar answered no JSON: {exc}") from None
        return [Paper.from_s2(p) for p in (body.get("data") or [])[:limit]]


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


class RecordedLiterature:
    """Offline search over recorded results: the recorded query's papers when the query
    was recorded, else the recorded papers ranked by the words they share with it."""

    def __init__(self, directory: Path = RECORDED_DIR) -> None:
        self.queries: dict[str, list[Paper]] = {}
        for file in sorted(directory.glob("*.json")):
            for entry in json.loads(file.read_text())["searches"]:
                papers = [Paper.from_s2(p) for p in entry["data"]]
                self.queries[" ".join(sorted(_words(entry["query"])))] = papers
        seen: dict[str, Paper] = {}
        for papers in self.queries.values():
            for p in papers:
                seen.setdefault(p.title, p)
        self.papers = list(seen.values())

    def __call__(self, query: str, limit: int = 10) -> list[Paper]:
        words = _words(query)
        exact = self.queries.get(" ".join(sorted(words)))
        if exact is not None:
            return exact[:limit]
        scored = [(len(words & _words(f"{p.title} {p.abstract}")), p) for p in self.papers]
        ranked = sorted((s for s in scored if s[0] > 0), key=lambda s: (-s[0], s[1].title))
        return [p for _, p in ranked[:limit]]


Warn = Callable[[str], None]
