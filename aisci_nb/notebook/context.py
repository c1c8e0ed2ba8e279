"""The notebook author's surface: `RunContext`, what `aisci_nb.init` returns.

The same notebook runs under the worker (events go to the control plane), in JupyterLab or
under `pytest --nbval` (no `events_url`: events go to a local debug file). Credentials come
from the kernel's environment, never from parameters, so they never land in an executed
notebook. Under a worker, that is a run-scoped token (`AISCI_RUN_TOKEN`, good for this run and lease
epoch only) and an outbox for artifacts (`AISCI_OUTBOX`): the kernel holds neither the
worker's key nor the S3 secret.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import InvalidMetric, MissingInput
from ..events.emitter import RunEmitter
from ..storage.outbox import OUTBOX_ENV, Staged, stage
from .logbridge import RunLogHandler, event_level
from .outputs import add_output
from .track import track as _track

if TYPE_CHECKING:
    from ..storage.store import ArtifactStore, StoredObject

T = TypeVar("T")


def _stored(staged: Staged) -> StoredObject:
    from ..storage.store import StoredObject

    return StoredObject(staged.key, "", staged.size, staged.sha256, staged.content_type)


@dataclass
class RunContext:
    run_id: str
    stage: str
    idea: dict[str, Any]
    events: RunEmitter
    outputs_path: Path  # the outputs manifest, fixed when the context was built
    inputs: dict[str, dict[str, str]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    store: ArtifactStore | None = None
    debug: bool = False
    debug_artifacts: Path | None = None  # where a debug context keeps its artifacts
    closed: bool = False

    def _emit(self, event_type: str, **data: Any) -> None:
        self.events.emit(event_type, **data)

    def progress(self, progress: float, **counters: Any) -> None:
        """Report how far the stage is (0..1) plus optional counters (iteration, nodes, ...)."""
        self._emit("ai.run.stage_progress", stage=self.stage, progress=progress, **counters)

    def metric(self, name: str, value: float) -> None:
        """Report a metric; NaN, ±inf and non-numbers are refused here, where the cell that
        produced them is still on screen, rather than lost at the ingest."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidMetric(f"metric {name!r}: {value!r} is not a number") from None
        if not math.isfinite(number):
            raise InvalidMetric(f"metric {name!r} is {number}: only finite numbers can be "
                                "reported (a diverged run? report it with ctx.log instead)")
        self.metrics[name] = number
        self._emit("ai.run.stage_metric", stage=self.stage, name=name, value=number)

    def log(self, message: str, level: str | int = "info", **kv: Any) -> None:
        """Send a log line; `level` is debug, info, warn/warning, error (or a logging level)."""
        self._emit("ai.run.log", level=event_level(level), message=message, kv=kv or None,
                   source="kernel")

    def log_handler(self, level: int = logging.INFO) -> RunLogHandler:
        """A `logging.Handler` forwarding records to this run's log:
        `logging.getLogger().addHandler(ctx.log_handler())`."""
        return RunLogHandler(self.log, level)

    def input(self, step: str, name: str) -> Path:
        """The local path of output `name` of the earlier step `step`; MissingInput says
        what is missing and what this run has."""
        path = (self.inputs.get(step) or {}).get(name)
        if path is None:
            raise MissingInput(step, name, self.inputs)
        return Path(path)

    def track(self, items: Iterable[T], total: int | None = None, desc: str | None = None,
              **tqdm_kw: Any) -> Iterator[T]:
        """Iterate `items` under a tqdm bar that also reports the stage's progress."""
        return _track(items, self.progress, total=total, desc=desc or self.stage, **tqdm_kw)

    def _store(self) -> ArtifactStore:
        if self.store is None:
            from ..storage.store import LocalStore, store_from_env

            # Debugging writes nothing to production: artifacts stay in a local directory.
            self.store = (LocalStore(self.debug_artifacts or Path("aisci-debug-artifacts"))
                          if self.debug else store_from_env())
        return self.store

    def register_artifact(
        self, path: str | Path, *, kind: str = "file", name: str | None = None,
        key: str | None = None, content_type: str | None = None, output: bool = True,
    ) -> StoredObject:
        """Upload a file (sha256, content type, multipart when large, retried), announce it
        with `ai.artifact.registered`, and list it as a step output under `name` (default:
        the file's stem) so later steps receive it in their `inputs` (unless `output` is
        false: kept for people and tools, not handed on). On a final failure,
        `ai.artifact.failed` is emitted and `StorageError` raised."""
        from ..storage.store import StorageError

        path = Path(path)
        key = key or f"runs/{self.run_id}/artifacts/{self.stage}/{path.name}"
        outbox = os.environ.get(OUTBOX_ENV) if not self.debug and self.store is None else None
        if outbox:
            # The worker uploads it after the cell (it holds the store's credentials) and
            # announces it; the outputs manifest already names it for later steps.
            staged = stage(Path(outbox), key, path, content_type, kind)
            add_output(self.outputs_path, name or path.stem, staged.key)
            return _stored(staged)
        try:
            stored = self._store().put_file(key, path, content_type)
        except Exception as exc:
            message = f"could not store {path.name} as {key}: {exc}"
            self._emit("ai.artifact.failed", key=key, code="STORAGE_ERROR", message=message)
            self.events.emitter.flush(timeout_s=30)
            raise StorageError(message) from exc
        self._emit("ai.artifact.registered", key=stored.key, bytes=stored.size,
                   sha256=stored.sha256, content_type=stored.content_type, kind=kind)
        if output:
            add_output(self.outputs_path, name or path.stem, stored.key)
        return stored

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
        self.closed = True
        self.events.emitter.close(timeout_s=timeout_s)
