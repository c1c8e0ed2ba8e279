"""The kernel's outbox: what a kernel stages, its worker uploads in staging order."""

from __future__ import annotations

from pathlib import Path

from aisci_nb.contract.scrub import Scrubber
from aisci_nb.storage.outbox import Drainer, stage
from aisci_nb.storage.store import LocalStore


def test_a_key_staged_many_times_ends_as_its_last_version(tmp_path: Path) -> None:
    outbox, store = tmp_path / "outbox", LocalStore(tmp_path / "store")
    src = tmp_path / "journal.json"
    for version in range(30):  # a journal re-registered as the search goes
        src.write_text(f'{{"version": {version}}}')
        stage(outbox, "runs/r1/artifacts/Stage_1/journal.json", src, None, "journal")
    events: list[dict] = []
    drainer = Drainer(outbox, ("runs/r1/",), store, Scrubber(["s3cr3t-value"]),
                      lambda event_type, **data: events.append({"type": event_type, **data}))
    assert drainer.drain() == []
    assert store.get_bytes("runs/r1/artifacts/Stage_1/journal.json") == b'{"version": 29}'
    assert [e["type"] for e in events] == ["ai.artifact.registered"] * 30
    assert list((outbox / "pending").iterdir()) == []  # each entry uploaded once


def test_a_key_outside_the_run_is_refused_and_text_is_scrubbed(tmp_path: Path) -> None:
    outbox, store = tmp_path / "outbox", LocalStore(tmp_path / "store")
    src = tmp_path / "log.txt"
    src.write_text("token=s3cr3t-value")
    stage(outbox, "runs/other/x.txt", src, "text/plain", "file")
    stage(outbox, "runs/r1/log.txt", src, "text/plain", "file")
    events: list[dict] = []
    drainer = Drainer(outbox, ("runs/r1/",), store, Scrubber(["s3cr3t-value"]),
                      lambda event_type, **data: events.append({"type": event_type, **data}))
    failures = drainer.drain()
    assert len(failures) == 1 and "outside" in failures[0]
    assert b"s3cr3t-value" not in store.get_bytes("runs/r1/log.txt")
    assert sorted(e["type"] for e in events) == ["ai.artifact.failed", "ai.artifact.registered"]
