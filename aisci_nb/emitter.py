"""Sending events: `Emitter.emit()` queues, a background thread batches and posts NDJSON.

The worker and the notebook kernel of one run share one sequence file, so the per-run
`sequence` stays strictly increasing across both processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from .envelope import Event, make_event

log = logging.getLogger(__name__)

BATCH_MAX = 50
BATCH_WAIT_S = 1.0


class SequenceCounter:
    """A per-run counter in a small file, shared by processes through an exclusive lock."""

    def __init__(self, path: Path, floor: int = 0) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked() as f:
            current = int(f.read() or 0)
            if floor > current:
                f.seek(0)
                f.truncate()
                f.write(str(floor))

    @contextlib.contextmanager
    def _locked(self):
        with self.path.open("a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            try:
                yield f
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def next(self) -> int:
        with self._locked() as f:
            value = int(f.read() or 0) + 1
            f.seek(0)
            f.truncate()
            f.write(str(value))
            f.flush()
        return value


class Sink(Protocol):
    def send(self, events: list[Event]) -> None: ...


class HttpSink:
    """Posts a batch as NDJSON to the control plane; raises on anything but 202."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 10.0):
        headers = {"content-type": "application/x-ndjson"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self.client = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)

    def send(self, events: list[Event]) -> None:
        body = "\n".join(json.dumps(e.to_json(), default=str) for e in events) + "\n"
        resp = self.client.post("/api/ingest/events", content=body.encode())
        if resp.status_code != 202:
            raise httpx.HTTPStatusError(
                f"ingest answered {resp.status_code}: {resp.text[:200]}",
                request=resp.request,
                response=resp,
            )
        invalid = resp.json().get("invalid_lines", [])
        for item in invalid:
            log.error("control plane refused event: %s", item)


class DebugSink:
    """For notebooks run outside the worker: events go to the console and a local file."""

    def __init__(self, path: Path | None = None, echo: bool = True) -> None:
        self.path = path
        self.echo = echo
        self.sent: list[Event] = []

    def send(self, events: list[Event]) -> None:
        self.sent.extend(events)
        lines = [json.dumps(e.to_json(), default=str) for e in events]
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write("\n".join(lines) + "\n")
        if self.echo:
            for e in events:
                print(f"[aisci event] {e.type} {json.dumps(e.data, default=str)}", file=sys.stderr)


class Emitter:
    """Builds envelopes and hands them to a background sender; `emit()` never waits on I/O."""

    def __init__(
        self,
        sink: Sink,
        *,
        source: str,
        sequence: SequenceCounter | None = None,
        traceparent: str | None = None,
        retry_for_s: float = 60.0,
        epoch: int | None = None,
    ) -> None:
        self.sink = sink
        self.epoch = epoch  # the lease epoch stamped on every event (ingest drops stale ones)
        self.source = source
        self.sequence = sequence
        self.traceparent = traceparent
        self.retry_for_s = retry_for_s
        self._queue: queue.Queue[Event | Callable[[], None]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="aisci-emitter", daemon=True)
        self._thread.start()
        self.failed: list[Event] = []

    def emit(self, event_type: str, data: dict[str, Any]) -> Event:
        seq = self.sequence.next() if self.sequence else None
        event = make_event(
            event_type, data, source=self.source, seq=seq, traceparent=self.traceparent,
            epoch=self.epoch,
        )
        self._queue.put(event)
        return event

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until everything emitted so far was sent (or given up on)."""
        done = threading.Event()
        self._queue.put(done.set)
        done.wait(timeout_s)

    def close(self, timeout_s: float | None = None) -> None:
        self.flush(timeout_s)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[Event] = []
            waiters: list[Callable[[], None]] = []
            while True:
                if callable(item):
                    waiters.append(item)
                    break  # a flush request: send what we have now
                batch.append(item)
                if len(batch) >= BATCH_MAX:
                    break
                try:
                    item = self._queue.get(timeout=BATCH_WAIT_S)
                except queue.Empty:
                    break
            if batch:
                self._send(batch)
            for wake in waiters:
                wake()

    def _send(self, batch: list[Event]) -> None:
        try:
            for attempt in Retrying(
                stop=stop_after_delay(self.retry_for_s),
                wait=wait_exponential(0.2, max=5),
                retry=retry_if_exception_type(httpx.HTTPError),
                reraise=True,
            ):
                with attempt:
                    self.sink.send(batch)
        except Exception as exc:
            self.failed.extend(batch)
            log.error("could not deliver %d events: %s", len(batch), exc)
