"""The emitter and its spool: nothing emitted is lost, whatever the control plane does."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from ulid import ULID

from aisci_nb.contract.envelope import InvalidEvent, new_ulid
from aisci_nb.contract.failures import code_for, from_exception
from aisci_nb.events.emitter import Emitter, RunEmitter, SequenceCounter
from aisci_nb.events.spool import Spool, SpoolFull
from aisci_nb.ops.catalog_doc import DOC_PATH, render


class Recorder:
    """A sink that can be switched off, like a control plane going down."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self.up.set()
        self.batches: list[list[bytes]] = []

    def send(self, lines: list[bytes]) -> None:
        if not self.up.is_set():
            raise httpx.ConnectError("control plane down")
        self.batches.append(list(lines))


def test_ulids_are_valid_time_ordered_and_unique() -> None:
    before = datetime.now(UTC)
    ids = [new_ulid() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    parsed = ULID.from_str(ids[0])
    assert str(parsed) == ids[0]
    assert abs((parsed.datetime - before).total_seconds()) < 5
    assert ULID.from_str(new_ulid(1_700_000_000_123_000_000)).milliseconds == 1_700_000_000_123


def test_events_doc_is_generated_from_the_catalogue() -> None:
    assert DOC_PATH.read_text() == render(), (
        "docs/events.md is stale: run python -m aisci_nb.ops.catalog_doc --write")


def test_batches_of_at_most_50_and_a_clear_error_for_bad_data(tmp_path: Path) -> None:
    sink = Recorder()
    emitter = Emitter(sink, source="test://e", spool=Spool(tmp_path))
    run = RunEmitter(emitter, "r1", sequence=SequenceCounter(tmp_path / "seq"))
    for i in range(120):
        run.emit("ai.run.stage_progress", stage="Stage_1", progress=i / 120)
    with pytest.raises(InvalidEvent, match=r"data\.progress"):
        run.emit("ai.run.stage_progress", stage="Stage_1", progress=7)
    assert emitter.flush(timeout_s=10)
    sizes = [len(b) for b in sink.batches]
    assert sum(sizes) == 120 and max(sizes) <= 50
    assert not list(tmp_path.glob("*/*.ndjson")) or all(
        p.stat().st_size == 0 for p in tmp_path.glob("*/*.ndjson"))
    emitter.close()
    assert not list(tmp_path.glob("*/*.ndjson"))  # acked and closed: nothing left behind


def test_unacknowledged_events_survive_in_the_spool_and_are_adopted(tmp_path: Path) -> None:
    down = Recorder()
    down.up.clear()
    first = Emitter(down, source="test://a", spool=Spool(tmp_path))
    ids = [first.emit("ai.run.log", {"run_id": "r1", "level": "info", "message": f"m{i}"}).id
           for i in range(30)]
    assert not first.close(timeout_s=0.5)  # could not deliver
    left = list(tmp_path.glob("run_r1/*.ndjson"))
    assert len(left) == 1 and len(left[0].read_bytes().splitlines()) == 30

    sink = Recorder()
    second = Emitter(sink, source="test://b", spool=Spool(tmp_path))
    assert second.adopt_orphans() == 30
    assert second.flush(timeout_s=10)
    delivered = [line for batch in sink.batches for line in batch]
    assert [ULID.from_str(i) for i in ids]  # ids are real ULIDs
    assert all(i.encode() in b"".join(delivered) for i in ids)
    assert not left[0].exists()
    second.close()


def test_a_live_emitter_keeps_its_spool_file(tmp_path: Path) -> None:
    down = Recorder()
    down.up.clear()
    live = Emitter(down, source="test://live", spool=Spool(tmp_path))
    live.emit("ai.run.log", {"run_id": "r2", "level": "info", "message": "m"})
    other = Emitter(Recorder(), source="test://other", spool=Spool(tmp_path))
    assert other.adopt_orphans() == 0  # locked by a live process: not an orphan
    down.up.set()
    assert live.flush(timeout_s=15)
    live.close()
    other.close()


def test_the_spool_bound_is_a_clear_error(tmp_path: Path) -> None:
    down = Recorder()
    down.up.clear()
    emitter = Emitter(down, source="test://full", spool=Spool(tmp_path, max_bytes=2000))
    with pytest.raises(SpoolFull, match="not yet acknowledged"):
        for i in range(100):
            emitter.emit("ai.run.log", {"run_id": "r3", "level": "info", "message": f"m{i}"})
    emitter.close(timeout_s=0.2)


def test_sequence_is_strictly_increasing_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "events.seq"
    SequenceCounter(path, floor=5).close()
    code = ("import sys; from pathlib import Path;"
            "from aisci_nb.events.emitter import SequenceCounter;"
            "c = SequenceCounter(Path(sys.argv[1])); print(*[c.next() for _ in range(400)])")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outs = [[int(x) for x in p.communicate(timeout=60)[0].split()] for p in procs]
    for seq in outs:
        assert seq == sorted(seq) and len(set(seq)) == len(seq)
    assert sorted(x for seq in outs for x in seq) == list(range(6, 6 + 1200))


@pytest.mark.parametrize(("name", "code", "retryable"), [
    ("MemoryError", "OOMError", False),
    ("OutOfMemoryError", "OOMError", False),
    ("TimeoutError", "TIMEOUT", True),
    ("ZeroDivisionError", "ZeroDivisionError", False),
])
def test_failure_codes(name: str, code: str, retryable: bool) -> None:
    assert code_for(name) == code
    exc = type(name, (Exception,), {})("boom")
    failure = from_exception(exc, stage="Stage_2")
    assert failure.code == code and failure.retryable is retryable
    data = failure.event_data("r1")
    assert data["stage"] == "Stage_2" and "boom" in data["traceback"]
