"""One step of a claimed run: record it, run its notebook, upload it, record the outcome.

The notebook gets the earlier steps' outputs as inputs and the run info as its one injected
parameter; it runs off the main thread (nbclient would take the worker's signals) and can be
stopped from another thread through `interrupt` (cancel, lease loss, shutdown).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from pymongo.database import Database

from ..contract.failures import Failure, FailureCode
from ..contract.lifecycle import StepStatus
from ..contract.runinfo import PARAMETER as RUN_INFO
from ..contract.runinfo import RunInfo
from ..contract.scrub import Scrubber
from ..db import utcnow
from ..events.emitter import Emitter, RunEmitter
from ..events.spool import Spool
from ..queue import claims
from ..queue.dbretry import with_db_retry
from ..runtime.execute import Limits, StepError, StepHandle, StepResult, execute_step
from ..settings import Settings
from ..storage.outbox import Drainer
from ..storage.store import ArtifactStore, StorageError, StoredObject
from .kernel_env import KernelSpoolSink, kernel_env, run_token, secret_values
from .pipelines import Step
from .session import RunSession
from .stepio import fetch_inputs, read_outputs
from .telemetry import gpu_name
from .usage import record_gpu_time

log = logging.getLogger("aisci.worker")
T = TypeVar("T")

# What carries one step: (session, step, idea) -> the failure, or None when it completed.
StepFn = Callable[[RunSession, Step, dict], Failure | None]
ENDED_BY_STOP = (FailureCode.CANCELED, FailureCode.RELEASED)  # a step status of their own


def run_dir(settings: Settings, claim: claims.Claim) -> Path:
    return (settings.work_dir / claim.run_id).resolve()


def off_main_thread(fn: Callable[[], T]) -> T:
    """Run `fn` in a thread of its own and wait for it. nbclient takes SIGINT/SIGTERM over
    (and resets them afterwards) when it runs in the main thread, and the worker keeps those
    for its own shutdown; short joins keep the main thread's handlers running."""
    if threading.current_thread() is not threading.main_thread():
        return fn()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="aisci-step", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    if "error" in box:
        raise box["error"]
    return box["value"]


@dataclass
class StepRunner:
    """Carries one step of a claimed run (a `StepFn`); the worker's default."""

    settings: Settings
    db: Database
    store: ArtifactStore
    notebooks_dir: Path
    source: str
    # Every output of the step (notebook, text artifacts, errors) passes through it.
    scrubber: Scrubber = field(default_factory=Scrubber)
    _active: StepHandle | None = field(default=None, init=False, repr=False)
    _active_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def pod_id(self) -> str:
        return self.settings.runpod_pod_id

    @property
    def spool_dir(self) -> Path:
        return (self.settings.work_dir / "spool").resolve()

    @property
    def active(self) -> StepHandle | None:
        with self._active_lock:
            return self._active

    def __call__(self, session: RunSession, step: Step, idea: dict) -> Failure | None:
        claim = session.claim
        output = run_dir(self.settings, claim) / "notebooks" / f"{step.name}.ipynb"
        started_at = utcnow()
        if not with_db_retry(claims.record_step, self.db, claim, step.name, {
                "status": StepStatus.RUNNING, "startedAt": started_at, "completedAt": None,
                "attempt": claim.run.get("attempt"), "epoch": claim.epoch, "pod": self.pod_id}):
            session.lease.lost.set()
            return None
        # A run's artifacts live under runs/{id}/, an ideation request's under ideation/{id}/.
        prefix = "ideation" if claim.kind is claims.IDEATION else "runs"
        drainer = Drainer(run_dir(self.settings, claim) / "outbox", (f"{prefix}/{claim.run_id}/",),
                          self.store, self.scrubber, session.emit)
        publish = self._publisher(session, step, drainer)
        try:
            result = off_main_thread(
                lambda: self._execute(session, step, idea, session.events, output, publish))
        except StorageError as exc:  # the inputs could not be fetched
            result = None
            error: StepError | None = StepError(FailureCode.STORAGE_ERROR, str(exc))
        self._resend_kernel_spool(session)
        lost = (result is not None and result.error is not None
                and result.error.code == FailureCode.LEASE_LOST)
        if lost or session.lost or not with_db_retry(claims.holds, self.db, claim):
            session.lease.lost.set()  # taken over: the notebook and outputs are not ours
            return None
        outputs: dict[str, str] = {}
        if result is not None:
            error = self._collect(session, step, result, output, outputs, drainer)
            with_db_retry(record_gpu_time, self.db, claim, step.name, result.duration_s,
                          gpu_name())
        return self._finish(session, step, started_at, result, error, outputs)

    def _publisher(self, session: RunSession, step: Step,
                   drainer: Drainer) -> Callable[[bytes], None]:
        key = step.artifact_key(session.claim.run_id)

        def publish(data: bytes) -> None:  # the running notebook, for the UI's live view
            if not session.lost:  # a taken-over run's notebook is the new holder's
                drainer.drain()  # what the kernel registered so far
                registered(session, self.store.put_bytes(key, self.scrubber.bytes(data),
                                                         "application/x-ipynb+json"), live=True)

        return publish

    def _collect(self, session: RunSession, step: Step, result: StepResult, output: Path,
                 outputs: dict[str, str], drainer: Drainer) -> StepError | None:
        """Upload what the kernel left in its outbox and the executed notebook (scrubbed),
        read the step's outputs; the step's error."""
        error = result.error
        failed_uploads = drainer.drain()
        if failed_uploads and error is None:
            error = StepError(FailureCode.STORAGE_ERROR, "; ".join(failed_uploads)[:2000])
        key = step.artifact_key(session.claim.run_id)
        if output.exists():
            try:
                output.write_bytes(self.scrubber.bytes(output.read_bytes()))
                stored = self.store.put_file(key, output)
            except Exception as exc:
                log.error("run %s: could not upload %s: %s", session.claim.run_id, key, exc)
                error = error or StepError(
                    FailureCode.STORAGE_ERROR, f"could not upload the executed notebook to "
                                               f"{key}: {exc} (kept on the pod at {output})")
            else:
                outputs["notebook"] = stored.key
                registered(session, stored)
        outputs.update(read_outputs(run_dir(self.settings, session.claim) / "cwd", step.name))
        return error

    def _finish(self, session: RunSession, step: Step, started_at: Any,
                result: StepResult | None, error: StepError | None,
                outputs: dict[str, str]) -> Failure | None:
        """Record the step's end on the run; the failure (with its stage), if any."""
        status = StepStatus.COMPLETED if error is None else StepStatus.FAILED
        if error is not None and error.code in ENDED_BY_STOP:
            status = StepStatus(error.code)
        record: dict[str, Any] = {
            "status": status, "startedAt": started_at, "completedAt": utcnow(),
            "duration_s": round(result.duration_s, 3) if result else 0.0, "outputs": outputs}
        if error is not None:
            # What a cell raised is written to MongoDB directly: scrubbed like the events.
            error = replace(error, message=self.scrubber.text(error.message),
                            traceback=self.scrubber.text(error.traceback)
                            if error.traceback else error.traceback)
            record["error"] = {"code": error.code, "message": error.message,
                               "cellIndex": error.cell_index, "cellId": error.cell_id}
        with_db_retry(claims.finish_step, self.db, session.claim, step.name, record)
        return replace(error, stage=step.name) if error and not error.stage else error

    def _execute(self, session: RunSession, step: Step, idea: dict, events: RunEmitter,
                 output: Path, publish: Callable[[bytes], None]) -> StepResult:
        """The step's notebook with the earlier steps' outputs as inputs, stoppable through
        `interrupt` while it runs."""
        claim = session.claim
        where = run_dir(self.settings, claim)
        handle = StepHandle()
        with self._active_lock:
            self._active = handle
        if (reason := session.stop_reason()) is not None:
            handle.cancel(*reason)  # asked to stop just before this step began
        try:
            # the run's (or the ideation request's) step records: where the inputs are
            run = with_db_retry(self.db[claim.kind.collection].find_one, {"_id": claim.run_id},
                                {"steps": 1}) or {}
            inputs = fetch_inputs(self.store, run.get("steps") or {}, step.name,
                                  where / "inputs")
            token = run_token(self.settings, claim.run_id, claim.epoch)
            self.scrubber.add(token)  # a kernel that prints its token leaks nothing either
            return execute_step(
                step.notebook_path(self.notebooks_dir), output, step.parameters,
                cwd=where / "cwd",
                offered={RUN_INFO: self.run_info(claim, idea, inputs, events).model_dump(),
                         "stage": step.name},
                secrets=[*secret_values(self.settings), *([token] if token else [])],
                requires=step.requires,
                limits=self.limits(step), handle=handle,
                on_event=lambda event_type, data: session.emit(event_type, stage=step.name,
                                                               **data),
                publish=publish, publish_every_s=self.settings.live_notebook_s,
                kernel_env=kernel_env(self.settings, token, where / "outbox", where),
                scrubber=self.scrubber,
            )
        finally:
            with self._active_lock:
                self._active = None

    def run_info(self, claim: claims.Claim, idea: dict, inputs: dict[str, dict[str, str]],
                 events: RunEmitter) -> RunInfo:
        """The one parameter a step notebook gets: all it needs to report and to work."""
        return RunInfo(
            run_id=claim.run_id, idea=idea, inputs=inputs or None,
            events_url=self.settings.control_plane_url, event_source=self.source,
            seq_path=str(run_dir(self.settings, claim) / "events.seq"),
            spool_dir=str(run_dir(self.settings, claim) / "kernel-spool"),
            spool_max_bytes=self.settings.spool_max_bytes,
            traceparent=events.traceparent, lease_epoch=claim.epoch)

    def _resend_kernel_spool(self, session: RunSession) -> None:
        """What the step's kernel could not deliver goes now, still under a run token for
        its run and epoch: never with this worker's key (the kernel wrote those lines)."""
        claim = session.claim
        spool_dir = run_dir(self.settings, claim) / "kernel-spool"
        if session.lost or not spool_dir.is_dir():
            return
        emitter = Emitter(KernelSpoolSink(self.settings), source=self.source,
                          spool=Spool(spool_dir), scrubber=self.scrubber)
        if emitter.adopt_orphans():
            emitter.flush(timeout_s=self.settings.emit_flush_timeout_s)
        emitter.close(timeout_s=1)

    def limits(self, step: Step) -> Limits:
        s = self.settings
        return Limits(cell_timeout_s=step.cell_timeout_s or s.cell_timeout_s,
                      step_timeout_s=step.timeout_s or s.step_timeout_s,
                      start_timeout_s=s.kernel_start_timeout_s, cancel_grace_s=s.stop_grace_s)


def registered(session: RunSession, stored: StoredObject, **extra: Any) -> None:
    """Announce an uploaded executed notebook (`live=True` for a running one's snapshot)."""
    session.emit("ai.artifact.registered", key=stored.key, bytes=stored.size,
                 sha256=stored.sha256, content_type=stored.content_type, kind="notebook",
                 **extra)
