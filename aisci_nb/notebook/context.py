"""The notebook author's surface: a run context built from the injected parameters.

The same notebook runs under the worker (events go to the control plane), in JupyterLab or
under `pytest --nbval` (no `events_url`: events go to a local debug sink and the console).
Credentials come from the kernel's environment, never from parameters, so they never land
in an executed notebook. Under a worker that is a run-scoped token (`AISCI_RUN_TOKEN`, good
for this run and lease epoch only) and an outbox for artifacts (`AISCI_OUTBOX`): the kernel
holds neither the worker's key nor the S3 secret.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..contract.scrub import from_env as scrub_from_env
from ..events.emitter import DebugSink, Emitter, HttpSink, RunEmitter, SequenceCounter
from ..events.spool import Spool
from ..storage.outbox import OUTBOX_ENV, Staged, stage

if TYPE_CHECKING:
    from ..storage.store import ArtifactStore, StoredObject

API_KEY_ENV = "AISCI_API_KEY"
RUN_TOKEN_ENV = "AISCI_RUN_TOKEN"
AUTH_MODE_ENV = "AISCI_INGEST_AUTH"  # "bearer" (default) or "hmac"
OUTPUTS_DIR = ".aisci-outputs"
DEBUG_ARTIFACTS_DIR = "aisci-debug-artifacts"


def outputs_manifest(cwd: Path, stage: str) -> Path:
    """Where a step's kernel lists the artifacts it registered as the step's outputs."""
    return cwd / OUTPUTS_DIR / f"{stage}.json"


def _stored(staged: Staged) -> StoredObject:
    from ..storage.store import StoredObject

    return StoredObject(staged.key, "", staged.size, staged.sha256, staged.content_type)


@dataclass
class RunContext:
    run_id: str
    stage: str
    idea: dict[str, Any]
    events: RunEmitter
    metrics: dict[str, float] = field(default_factory=dict)
    store: ArtifactStore | None = None
    debug: bool = False

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

    def _store(self) -> ArtifactStore:
        if self.store is None:
            from ..storage.store import LocalStore, store_from_env

            # Debugging writes nothing to production: artifacts stay in a local directory.
            self.store = LocalStore(Path(DEBUG_ARTIFACTS_DIR)) if self.debug else store_from_env()
        return self.store

    def register_artifact(
        self, path: str | Path, *, kind: str = "file", name: str | None = None,
        key: str | None = None, content_type: str | None = None,
    ) -> StoredObject:
        """Upload a file (sha256, content type, multipart when large, retried), announce it
        with `ai.artifact.registered`, and list it as a step output under `name` (default:
        the file's stem) so later steps receive it in their `inputs`. On a final failure,
        `ai.artifact.failed` is emitted and `StorageError` raised."""
        from ..storage.store import StorageError

        path = Path(path)
        key = key or f"runs/{self.run_id}/artifacts/{self.stage}/{path.name}"
        outbox = os.environ.get(OUTBOX_ENV) if not self.debug and self.store is None else None
        if outbox:
            # The worker uploads it after the cell (it holds the store's credentials) and
            # announces it; the outputs manifest already names it for later steps.
            staged = stage(Path(outbox), key, path, content_type, kind)
            self._list_output(name or path.stem, staged.key)
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
        self._list_output(name or path.stem, stored.key)
        return stored

    def _list_output(self, name: str, key: str) -> None:
        manifest = outputs_manifest(Path.cwd(), self.stage)
        manifest.parent.mkdir(parents=True, exist_ok=True)
        listed = json.loads(manifest.read_text()) if manifest.exists() else {}
        listed[name] = key
        manifest.write_text(json.dumps(listed, indent=1))

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
    if events_url and os.environ.get(RUN_TOKEN_ENV):
        sink: HttpSink | DebugSink = HttpSink(events_url, api_key=os.environ[RUN_TOKEN_ENV])
    elif events_url:
        sink = HttpSink(events_url, api_key=os.environ.get(API_KEY_ENV),
                        hmac=os.environ.get(AUTH_MODE_ENV) == "hmac")
    else:
        sink = DebugSink(Path("aisci-debug-events.ndjson"))
    spool = Spool(Path(spool_dir)) if spool_dir and events_url else None
    emitter = Emitter(sink, source=source, spool=spool, scrubber=scrub_from_env())
    atexit.register(emitter.close, 5)
    sequence = SequenceCounter(Path(seq_path)) if seq_path else None
    events = RunEmitter(emitter, run_id, sequence=sequence, traceparent=traceparent,
                        epoch=lease_epoch)
    return RunContext(run_id=run_id, stage=stage, idea=dict(idea or {}), events=events,
                      debug=not events_url)
