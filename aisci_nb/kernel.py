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

from .emitter import DebugSink, Emitter, HttpSink, SequenceCounter

API_KEY_ENV = "AISCI_API_KEY"


@dataclass
class RunContext:
    run_id: str
    stage: str
    idea: dict[str, Any]
    emitter: Emitter
    metrics: dict[str, float] = field(default_factory=dict)

    def _emit(self, event_type: str, **data: Any) -> None:
        self.emitter.emit(event_type, {"run_id": self.run_id, **data})

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
        the executed notebook that shows it. Events are flushed either way.
        """
        started = time.monotonic()
        self._emit("ai.run.stage_started", stage=self.stage, desc=desc)
        try:
            yield self
            self._emit(
                "ai.run.stage_completed",
                stage=self.stage,
                duration_s=round(time.monotonic() - started, 3),
                summary={"metrics": dict(self.metrics)},
            )
        finally:
            self.emitter.flush(timeout_s=30)

    def close(self) -> None:
        self.emitter.close(timeout_s=30)


def init(
    run_id: str | None = None,
    stage: str = "Stage_1",
    idea: dict[str, Any] | None = None,
    events_url: str | None = None,
    event_source: str | None = None,
    seq_path: str | None = None,
    traceparent: str | None = None,
    lease_epoch: int | None = None,
) -> RunContext:
    """Build the run context from a notebook's parameters."""
    run_id = run_id or "debug-run"
    source = event_source or f"notebook://{os.uname().nodename}"
    if events_url:
        sink = HttpSink(events_url, api_key=os.environ.get(API_KEY_ENV))
    else:
        sink = DebugSink(Path("aisci-debug-events.ndjson"))
    sequence = SequenceCounter(Path(seq_path)) if seq_path else None
    emitter = Emitter(sink, source=source, sequence=sequence, traceparent=traceparent,
                      epoch=lease_epoch)
    atexit.register(emitter.close, 10)
    return RunContext(run_id=run_id, stage=stage, idea=dict(idea or {}), emitter=emitter)
