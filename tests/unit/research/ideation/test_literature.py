"""Literature search: Semantic Scholar against a local HTTP server speaking its format
(429s retried, then given up on without a crash), and the recorded offline results."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from aisci_nb.research.ideation import (
    IdeationSettings,
    LiteratureUnavailable,
    RecordedLiterature,
    SemanticScholar,
    literature,
)

PAPER = {"title": "Deep Double Descent", "authors": [{"name": "P. Nakkiran"}],
         "venue": "ICLR", "year": 2020, "citationCount": 7, "abstract": "Peaks."}


class FakeS2:
    """Answers `/paper/search` with the statuses queued in `answers` (then 200)."""

    def __init__(self) -> None:
        self.answers: list[int] = []
        self.seen: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                fake.seen.append({"path": url.path, "query": parse_qs(url.query),
                                  "key": self.headers.get("x-api-key")})
                status = fake.answers.pop(0) if fake.answers else 200
                body = json.dumps({"total": 1, "data": [PAPER]} if status == 200
                                  else {"message": "Too Many Requests"}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                if status == 429:
                    self.send_header("retry-after", "0")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/graph/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def s2() -> Iterator[FakeS2]:
    fake = FakeS2()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def client(fake: FakeS2, **kw: object) -> SemanticScholar:
    return SemanticScholar(fake.url, kw.pop("api_key", None), backoff_s=0.01,
                           min_interval_s=0, **kw)  # type: ignore[arg-type]


def test_429_is_retried_and_the_key_is_sent(s2: FakeS2) -> None:
    s2.answers = [429, 429]
    papers = client(s2, api_key="k-123", max_attempts=4)("double descent", limit=5)
    assert [p.title for p in papers] == ["Deep Double Descent"]
    assert papers[0].authors == "P. Nakkiran" and papers[0].citations == 7
    assert len(s2.seen) == 3 and {s["key"] for s in s2.seen} == {"k-123"}
    assert s2.seen[0]["path"] == "/graph/v1/paper/search"
    assert s2.seen[0]["query"]["query"] == ["double descent"]
    assert s2.seen[0]["query"]["limit"] == ["5"]


def test_a_search_still_rate_limited_after_its_attempts_is_unavailable(s2: FakeS2) -> None:
    s2.answers = [429] * 10
    with pytest.raises(LiteratureUnavailable, match=r"after 3 attempts \(HTTP 429\)"):
        client(s2, max_attempts=3)("anything")
    assert len(s2.seen) == 3


def test_a_refused_search_is_not_retried(s2: FakeS2) -> None:
    s2.answers = [400]
    with pytest.raises(LiteratureUnavailable, match="HTTP 400"):
        client(s2)("anything")
    assert len(s2.seen) == 1


def test_requests_are_spaced(s2: FakeS2) -> None:
    import time

    search = SemanticScholar(s2.url, min_interval_s=0.3)
    started = time.monotonic()
    search("a")
    search("b")
    assert time.monotonic() - started >= 0.3


def test_recorded_results_exact_then_ranked_by_shared_words() -> None:
    recorded = RecordedLiterature()
    exact = recorded("label noise network width double descent")
    assert exact[0].title.startswith("Deep Double Descent")
    assert recorded("double descent width noise label network") == exact  # word order
    ranked = recorded("memorisation of noisy labels")
    assert ranked and "noisy" in (ranked[0].title + ranked[0].abstract).lower()
    assert recorded("memorisation of noisy labels") == ranked  # deterministic
    assert recorded("quantum chromodynamics") == []


def test_the_settings_pick_the_backend() -> None:
    assert literature(IdeationSettings(literature_search=False), offline=True) is None
    assert isinstance(literature(IdeationSettings(), offline=True), RecordedLiterature)
    assert isinstance(literature(IdeationSettings(), offline=False), SemanticScholar)
    live = IdeationSettings(literature_source="live")
    assert isinstance(literature(live, offline=True), SemanticScholar)
