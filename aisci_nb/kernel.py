"""The notebook author's surface: a run context built from the injected parameters.

The same notebook runs under the worker (events go to the control plane), in JupyterLab or
under `pytest --nbval` (no `events_url`: events go to a local debug sink and the console).
Credentials come from the kernel's environment, never from parameters, so they never land
in an executed notebook.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .emitter import DebugSink, Emitter, HttpSink, RunEmitter, SequenceCounter
from .spool import Spool

API_KEY_ENV = "AISCI_API_KEY"
AUTH_MODE_ENV = "AISCI_INGEST_AUTH"  # "bearer" (default) or "hmac"


@dataclass
class RunContext:
    run_id: str
    stage: str
    idea: dict[str, Any]
    events: RunEmitter
    metrics: dict[str, float] = field(default_factory=dict)

    def _emit(self, event_type: str, **data: Any) -> None:
        self.events.emit(event_type, **data)

    def progress(self, progress: float, **counters: Any) -> None:
        """Report how far the stage is (0..1) plus optional counters (iteration, nodes, ...)."""
        self._emit("ai.run.stage_progress", stage=self.stage, progress=progress, **counters)

    def metric(self, name: str, value: float) -> None:
        self.metrics[name] = float(value)
        self._emit("ai.run.stage_metric", stage=self.stage, name=name, value=float(value))

    def log(self, message: str, level: str = "info", **kv: Any) -> None:
        self._emit("ai.run.log", level=level, message=message, kv=kv or None, source="kernel")

    @contextlib.contextmanager
    def stage_scope(self, desc: str | None = None) -> Iterator[RunContext]:
        """Brackets the stage's work with stage_started / stage_completed.

        On an exception nothing is emitted here: the worker reports the failure once, with
        the executed notebook that shows it.
        """
        started = time.monotonic()
        self._emit("ai.run.stage_started", stage=self.stage, desc=desc)
        yield self
        self._emit(
            "ai.run.stage_completed",
            stage=self.stage,
            duration_s=round(time.monotonic() - started, 3),
            summary={"metrics": dict(self.metrics)},
        )

    def close(self, timeout_s: float = 10) -> None:
        """Give the sender a moment; what it cannot deliver, the worker sends from the spool."""
        self.events.emitter.close(timeout_s=timeout_s)


def init(
    run_id: str | None = None,
    stage: str = "Stage_1",
    idea: dict[str, Any] | None = None,
    events_url: str | None = None,
    event_source: str | None = None,
    seq_path: str | None = None,
    spool_dir: str | None = None,
    traceparent: str | None = None,
    lease_epoch: int | None = None,
) -> RunContext:
    """Build the run context from a notebook's parameters."""
    run_id = run_id or "debug-run"
    source = event_source or f"notebook://{os.uname().nodename}"
    if events_url:
        sink = HttpSink(events_url, api_key=os.environ.get(API_KEY_ENV),
                        hmac=os.environ.get(AUTH_MODE_ENV) == "hmac")
    else:
        sink = DebugSink(Path("aisci-debug-events.ndjson"))
    spool = Spool(Path(spool_dir)) if spool_dir and events_url else None
    emitter = Emitter(sink, source=source, spool=spool)
    atexit.register(emitter.close, 5)
    sequence = SequenceCounter(Path(seq_path)) if seq_path else None
    events = RunEmitter(emitter, run_id, sequence=sequence, traceparent=traceparent,
                        epoch=lease_epoch)
    return RunContext(run_id=run_id, stage=stage, idea=dict(idea or {}), events=events)
