"""Sending events without ever blocking the caller and without losing one.

`Emitter.emit()` builds and validates the envelope, appends it to the spool and queues it:
no network on the caller's thread. A background sender batches up to 50 events or 1 s into
one NDJSON POST, retries with backoff for as long as the process lives, and acknowledges
the spool only after the control plane's 202. What is still unacknowledged at exit stays in
the spool and is sent by the next emitter that adopts it.

Only what can succeed later is retried: transport failures, 5xx, 408/429, and 401/403 (a
key being rotated). An event the control plane refuses for good (a line named in
`invalid_lines`, or a request refused with another 4xx, retried line by line) is final:
it goes to a local dead-letter file with the reason and a log line, and the stream moves
on, so one poison event never holds back the events behind it.

The worker and the notebook kernel of one run share one sequence file, so the per-run
`sequence` stays strictly increasing across both processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import mmap
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_when_event_set,
    wait_exponential_jitter,
)

from ..contract.envelope import Event, make_event
from ..contract.scrub import Scrubber
from ..contract.signing import sign
from .spool import Spool, SpoolFile

log = logging.getLogger(__name__)

BATCH_MAX = 50
BATCH_WAIT_S = 1.0
DEAD_LETTER = "dead-letter.ndjson"


class SequenceCounter:
    """A per-run counter shared by processes: 8 bytes of a mapped file under `flock`."""

    def __init__(self, path: Path, floor: int = 0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        with self._locked():
            if os.fstat(self._fd).st_size < 8:
                os.ftruncate(self._fd, 8)
            self._map = mmap.mmap(self._fd, 8)
            if floor > self._read():
                self._write(floor)

    @contextlib.contextmanager
    def _locked(self):
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _read(self) -> int:
        return int.from_bytes(self._map[:8], "little")

    def _write(self, value: int) -> None:
        self._map[:8] = value.to_bytes(8, "little")

    def next(self) -> int:
        with self._locked():
            value = self._read() + 1
            self._write(value)
        return value

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


class Refused(Exception):
    """The control plane refused the whole request for good (a 4xx that a retry cannot fix)."""


RETRIED_4XX = frozenset({401, 403, 408, 429})


class Sink(Protocol):
    def send(self, lines: list[bytes]) -> list[tuple[int, str]] | None:
        """Deliver the lines; return (index, reason) of each refused for good, raise
        `Refused` if the whole request was, or `httpx.HTTPError` to have it retried."""
        ...


class HttpSink:
    """Posts a batch as NDJSON to the control plane; raises on anything but 202.

    Authenticates with a bearer key, or with `hmac=True` signs each body with the key.
    """

    def __init__(self, base_url: str, api_key: str | None = None, *, hmac: bool = False,
                 timeout_s: float = 10.0) -> None:
        self.api_key = api_key
        self.hmac = hmac and bool(api_key)
        headers = {"content-type": "application/x-ndjson"}
        if api_key and not self.hmac:
            headers["authorization"] = f"Bearer {api_key}"
        self.client = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)

    def send(self, lines: list[bytes]) -> list[tuple[int, str]]:
        body = b"".join(lines)
        headers = {}
        if self.hmac:
            assert self.api_key
            ts = str(int(time.time()))
            headers = {"x-aisci-timestamp": ts, "x-aisci-signature": sign(self.api_key, ts, body)}
        resp = self.client.post("/api/ingest/events", content=body, headers=headers)
        if resp.status_code >= 500 or resp.status_code in RETRIED_4XX:
            raise httpx.HTTPStatusError(
                f"ingest answered {resp.status_code}: {resp.text[:200]}",
                request=resp.request, response=resp)
        if resp.status_code != 202:
            raise Refused(f"ingest answered {resp.status_code}: {resp.text[:300]}")
        # Line numbers count the NDJSON lines of the body: each of `lines` is one.
        return [(item["line"] - 1, str(item.get("reason", "")))
                for item in resp.json().get("invalid_lines", [])
                if isinstance(item.get("line"), int) and 0 < item["line"] <= len(lines)]


class DebugSink:
    """For notebooks run outside the worker: events go to a local file (and, with `echo`,
    to stderr; off by default, because JupyterLab shows stderr as red noise)."""

    def __init__(self, path: Path | None = None, echo: bool = False) -> None:
        self.path = path
        self.echo = echo
        self.sent: list[dict[str, Any]] = []

    def send(self, lines: list[bytes]) -> list[tuple[int, str]]:
        events = [orjson.loads(line) for line in lines]
        self.sent.extend(events)
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as f:
                f.write(b"".join(lines))
        if self.echo:
            for e in events:
                print(f"[aisci event] {e['type']} {json.dumps(e['data'])}", file=sys.stderr)
        return []


@dataclass(frozen=True)
class _Flush:
    done: threading.Event


def spool_key(event: Event) -> str:
    """The spool directory of an event: its subject, as one path segment."""
    return event.subject.replace("/", "_")


class Emitter:
    """Builds envelopes and hands them to a background sender; `emit()` never waits on I/O.

    The sender sleeps until a batch is full, a second has passed, or someone flushes, so a
    burst of `emit()` calls costs no thread switch per event.
    """

    def __init__(self, sink: Sink, *, source: str, spool: Spool | None = None,
                 batch_max: int = BATCH_MAX, batch_wait_s: float = BATCH_WAIT_S,
                 dead_letter: Path | None = None, scrubber: Scrubber | None = None) -> None:
        self.sink = sink
        self.scrubber = scrubber  # secrets never leave in an event's data
        self.source = source
        self.spool = spool
        self.dead_letter = dead_letter or (spool.root / DEAD_LETTER if spool else None)
        self.refused = 0
        self.batch_max = batch_max
        self.batch_wait_s = batch_wait_s
        self._pending: deque[tuple[bytes, SpoolFile | None] | _Flush] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._drained = True
        self._thread = threading.Thread(target=self._run, name="aisci-emitter", daemon=True)
        self._thread.start()
        self.sent = 0

    def emit(self, event_type: str, data: dict[str, Any], *, seq: int | None = None,
             traceparent: str | None = None, epoch: int | None = None) -> Event:
        """Validate, spool and queue one event; raises on bad data or a full spool."""
        if self.scrubber:
            data = self.scrubber.obj(data)
        event = make_event(event_type, data, source=self.source, seq=seq,
                           traceparent=traceparent, epoch=epoch)
        line = event.to_line()
        spool_file = self.spool.append(spool_key(event), line) if self.spool else None
        self._pending.append((line, spool_file))
        if len(self._pending) >= self.batch_max:
            self._wake.set()
        return event

    def adopt_orphans(self) -> int:
        """Queue the events that dead processes left in the spool; returns how many."""
        count = 0
        if self.spool is None:
            return 0
        for spool_file, lines in self.spool.orphans():
            self._pending.extend((line, spool_file) for line in lines)
            count += len(lines)
        if count:
            log.info("resending %d events left in the spool by earlier processes", count)
            self._wake.set()
        return count

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything emitted so far was acknowledged; False on timeout."""
        marker = _Flush(threading.Event())
        self._pending.append(marker)
        self._wake.set()
        return marker.done.wait(timeout_s)

    def close(self, timeout_s: float | None = 30) -> bool:
        """Flush, then stop; what was not acknowledged stays in the spool. Closing again
        (a notebook's `ctx.close()`, then the kernel's atexit) returns at once."""
        if self._stop.is_set():
            return self._drained
        drained = self._drained = self.flush(timeout_s)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=15)
        if self.spool:
            self.spool.close()
        if not drained:
            log.warning("control plane unreachable: unsent events stay in the spool at %s",
                        self.spool.root if self.spool else "(no spool: lost)")
        return drained

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.batch_wait_s)
            self._wake.clear()
            while self._pending:
                batch: list[tuple[bytes, SpoolFile | None]] = []
                flushes: list[_Flush] = []
                while self._pending and len(batch) < self.batch_max:
                    item = self._pending.popleft()
                    if isinstance(item, _Flush):
                        flushes.append(item)
                        break  # everything before the marker goes now
                    batch.append(item)
                if batch and not self._send(batch):
                    return  # stopping: the rest stays in the spool
                for f in flushes:
                    f.done.set()

    def _send(self, batch: list[tuple[bytes, SpoolFile | None]]) -> bool:
        lines = [line for line, _ in batch]
        try:
            refused = self._deliver(lines)
        except Refused as exc:
            if len(lines) == 1:
                refused = [(0, str(exc))]
            else:  # the request as a whole: let each line get its own verdict
                return all(self._send([item]) for item in batch)
        except httpx.HTTPError:
            return False
        for index, reason in refused:
            self._dead_letter(lines[index], reason)
        self.sent += len(batch) - len(refused)
        if self.spool:
            counts: dict[int, list] = {}
            for _, spool_file in batch:
                if spool_file is not None:
                    counts.setdefault(id(spool_file), [spool_file, 0])[1] += 1
            for spool_file, n in counts.values():
                self.spool.ack(spool_file, n)
        return True

    def _deliver(self, lines: list[bytes]) -> list[tuple[int, str]]:
        """Send with retries of what may succeed later; returns the lines refused for good."""
        for attempt in Retrying(
            stop=stop_when_event_set(self._stop),
            wait=wait_exponential_jitter(multiplier=0.2, max=5),
            retry=retry_if_exception_type(httpx.HTTPError),
            before_sleep=lambda rs: log.warning(
                "event delivery failed (%s); retrying", rs.outcome.exception()),
            reraise=True,
        ):
            with attempt:
                return self.sink.send(lines) or []
        return []  # not reached: the stop event ends the retries by raising

    def _dead_letter(self, line: bytes, reason: str) -> None:
        """Keep a refused event with its reason, locally: it is final, not retried."""
        self.refused += 1
        try:
            event: Any = orjson.loads(line)
        except orjson.JSONDecodeError:
            event = line.decode("utf-8", "replace")
        log.error("the control plane refused an event for good (%s); kept in %s", reason,
                  self.dead_letter or "the log only")
        if self.dead_letter is None:
            log.error("refused event: %s", line[:2000].decode("utf-8", "replace"))
            return
        self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
        record = {"reason": reason, "at": time.time(), "event": event}
        with self.dead_letter.open("ab") as f:
            f.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))

@dataclass
class RunEmitter:
    """The events of one run: its sequence, its trace, its `run_id` in every `data`, and the
    lease epoch it is held under (the ingest keeps a stale epoch's events out of the read
    model)."""

    emitter: Emitter
    run_id: str
    sequence: SequenceCounter | None = None
    traceparent: str | None = None
    epoch: int | None = None

    def emit(self, event_type: str, **data: Any) -> Event:
        seq = self.sequence.next() if self.sequence else None
        return self.emitter.emit(event_type, {"run_id": self.run_id, **data}, seq=seq,
                                 traceparent=self.traceparent, epoch=self.epoch)
