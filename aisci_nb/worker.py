"""The headless worker: claim a run, execute its step notebooks, report, repeat.

MongoDB is written directly for what the queue owns (claim, status, step records, fenced by
the lease epoch); everything else reaches the read model as CloudEvents through the control
plane. Every executed notebook is uploaded, a failed one above all. One emitter serves the
whole process: a control plane outage never stalls the work, the events wait in the spool.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pymongo.database import Database

from . import queue
from .db import connect, ensure_indexes, utcnow
from .emitter import Emitter, HttpSink, RunEmitter, SequenceCounter
from .failures import Failure, from_exception
from .kernel import API_KEY_ENV, AUTH_MODE_ENV
from .lifecycle import RunStatus
from .pipeline import EXPERIMENT_STEPS, NOTEBOOKS_DIR, Step
from .runner import Limits, StepError, StepHandle, StepResult, execute_step
from .settings import Settings, WorkerMode, load_settings
from .spool import Spool
from .stepio import fetch_inputs, read_outputs
from .store import ArtifactStore, StorageError, StoredObject, open_store
from .telemetry import gpu_name
from .tracing import new_trace_id, traceparent

log = logging.getLogger("aisci.worker")


@dataclass
class Worker:
    settings: Settings
    db: Database
    store: ArtifactStore
    notebooks_dir: Path = NOTEBOOKS_DIR
    steps: tuple[Step, ...] = EXPERIMENT_STEPS
    emitter: Emitter = field(init=False)
    current: RunEmitter | None = field(init=False, default=None)
    _active: StepHandle | None = field(default=None, init=False, repr=False)
    _active_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        key = self.settings.aisci_api_key
        sink = HttpSink(self.settings.control_plane_url,
                        key.get_secret_value() if key else None,
                        hmac=self.settings.aisci_ingest_auth == "hmac")
        self.emitter = Emitter(sink, source=self.source, spool=Spool(
            self.spool_dir, max_bytes=self.settings.spool_max_bytes))
        self.emitter.adopt_orphans()

    @property
    def active_step(self) -> StepHandle | None:
        """The running step's handle (its kernel's pid, whether it was stopped), if any."""
        with self._active_lock:
            return self._active

    def interrupt(self, code: str = "CANCELED", message: str = "the run was canceled") -> bool:
        """Stop the running step from another thread (the seam for cancel and lease loss):
        its kernel is interrupted, then shut down, and the step fails with `code`. Returns
        whether a step was running."""
        handle = self.active_step
        if handle is None:
            return False
        handle.cancel(code, message)
        return True

    def secret_values(self) -> list[str]:
        """The credentials this worker holds; refused in parameters, kept out of notebooks."""
        s = self.settings
        found = [s.aisci_api_key, s.minio_secret_key, s.openai_api_key, s.anthropic_api_key,
                 *s.ingest_api_keys]
        return [v.get_secret_value() for v in found if v and v.get_secret_value()]

    def kernel_env(self) -> dict[str, str]:
        """The kernel's environment: how it gets credentials and the store, never through
        parameters (which land in the executed notebook)."""
        s = self.settings
        env = dict(os.environ)
        values: dict[str, Any] = {
            API_KEY_ENV: s.aisci_api_key.get_secret_value() if s.aisci_api_key else None,
            AUTH_MODE_ENV: s.aisci_ingest_auth,
            "MINIO_ENDPOINT": s.minio_endpoint,
            "MINIO_ACCESS_KEY": s.minio_access_key,
            "MINIO_SECRET_KEY": (s.minio_secret_key.get_secret_value()
                                 if s.minio_secret_key else None),
            "MINIO_BUCKET": s.minio_bucket,
            "MINIO_SECURE": str(s.minio_secure).lower(),
            "ARTIFACTS_DIR": str(s.artifacts_dir.resolve()),
        }
        env.update({k: str(v) for k, v in values.items() if v is not None})
        return env

    @property
    def pod_id(self) -> str:
        return self.settings.runpod_pod_id

    @property
    def source(self) -> str:
        return f"pod://{self.pod_id}"

    @property
    def spool_dir(self) -> Path:
        return (self.settings.work_dir / "spool").resolve()

    def run_forever(self, max_runs: int | None = None, exit_when_idle: bool = False) -> int:
        """Claim and run until `max_runs` runs are done (or the queue is empty, if asked)."""
        done = 0
        try:
            while max_runs is None or done < max_runs:
                claim = queue.claim_next(self.db, self.pod_id)
                if claim is None:
                    if exit_when_idle:
                        break
                    time.sleep(self.settings.poll_interval_s)
                    continue
                self.process(claim)
                done += 1
        finally:
            self.emitter.close(timeout_s=self.settings.emit_flush_timeout_s)
        return done

    def _run_dir(self, claim: queue.Claim) -> Path:
        return (self.settings.work_dir / claim.run_id).resolve()

    def _run_emitter(self, claim: queue.Claim) -> RunEmitter:
        """The run's sequence (shared with its kernels) and its trace, kept across attempts."""
        trace_id = claim.run.get("traceId")
        if not trace_id:
            trace_id = new_trace_id()
            self.db.runs.update_one(queue.fenced_filter(claim), {"$set": {"traceId": trace_id}})
        seq = SequenceCounter(self._run_dir(claim) / "events.seq",
                              floor=int(claim.run.get("lastEventSeq") or 0))
        return RunEmitter(self.emitter, claim.run_id, sequence=seq,
                          traceparent=traceparent(trace_id))

    def process(self, claim: queue.Claim) -> RunStatus:
        """Carry one claimed run through its steps; always ends it COMPLETED or FAILED."""
        events = self.current = self._run_emitter(claim)
        started = time.monotonic()
        log.info("claimed run %s (attempt %s)", claim.run_id, claim.run.get("attempt"))
        try:
            pod = {"id": self.pod_id, "gpu": gpu_name(), "region": self.settings.worker_region}
            queue.set_status(self.db, claim, RunStatus.RUNNING, {"startedAt": utcnow(), "pod": pod})
            events.emit("ai.run.started", pod_id=pod["id"], gpu=pod["gpu"], region=pod["region"])
            idea = self._idea(claim)
            for step in self.steps:
                if claim.run.get("steps", {}).get(step.name, {}).get("status") == "COMPLETED":
                    continue
                failure = self._run_step(claim, step, idea, events)
                self.emitter.adopt_orphans()  # what the step's kernel could not deliver
                if failure:
                    self._fail(claim, events, failure)
                    return RunStatus.FAILED
            events.emit("ai.run.completed",
                        total_duration_s=round(time.monotonic() - started, 3))
            queue.set_status(self.db, claim, RunStatus.COMPLETED, {"completedAt": utcnow()})
            return RunStatus.COMPLETED
        except Exception as exc:  # the main loop's guard: every failure reaches the user
            log.exception("run %s failed in the worker", claim.run_id)
            self._fail(claim, events, from_exception(exc))
            return RunStatus.FAILED
        finally:
            self.current = None
            events.sequence.close()
            if not self.emitter.flush(timeout_s=self.settings.emit_flush_timeout_s):
                log.warning("run %s: events not yet delivered; they wait in the spool",
                            claim.run_id)

    def _idea(self, claim: queue.Claim) -> dict:
        hyp_id = claim.run.get("hypothesisId")
        hyp = self.db.hypotheses.find_one({"_id": hyp_id}) if hyp_id else None
        if hyp is None:
            raise LookupError(f"run {claim.run_id}: hypothesis {hyp_id!r} not found")
        idea = hyp.get("ideaJson")
        if not isinstance(idea, dict):
            raise ValueError(f"hypothesis {hyp_id}: ideaJson is missing or not an object")
        return idea

    def _run_step(
        self, claim: queue.Claim, step: Step, idea: dict, events: RunEmitter
    ) -> Failure | None:
        run_dir = self._run_dir(claim)
        output = run_dir / "notebooks" / f"{step.name}.ipynb"
        key = step.artifact_key(claim.run_id)
        queue.record_step(self.db, claim, step.name,
                          {"status": "RUNNING", "startedAt": utcnow(), "attempt": claim.epoch})

        def registered(stored: StoredObject, **extra: Any) -> None:
            events.emit("ai.artifact.registered", key=stored.key, bytes=stored.size,
                        sha256=stored.sha256, content_type=stored.content_type,
                        kind="notebook", **extra)

        def publish(data: bytes) -> None:  # the running notebook, for the UI's live view
            registered(self.store.put_bytes(key, data, "application/x-ipynb+json"), live=True)

        try:
            result = self._execute(claim, step, idea, events, output, publish)
        except StorageError as exc:  # the inputs could not be fetched
            result, error = None, StepError("STORAGE_ERROR", str(exc))
        outputs: dict[str, str] = {}
        if result is not None:
            error = result.error
            if output.exists():
                try:
                    stored = self.store.put_file(key, output)
                except Exception as exc:
                    log.error("run %s: could not upload %s: %s", claim.run_id, key, exc)
                    error = error or StepError(
                        "STORAGE_ERROR", f"could not upload the executed notebook to {key}: "
                                         f"{exc} (kept on the pod at {output})")
                else:
                    outputs["notebook"] = stored.key
                    registered(stored)
            outputs.update(read_outputs(run_dir / "cwd", step.name))
        record: dict[str, Any] = {
            "status": "COMPLETED" if error is None else "FAILED", "completedAt": utcnow(),
            "duration_s": round(result.duration_s, 3) if result else 0.0, "outputs": outputs}
        if error is not None:
            record["error"] = {"code": error.code, "message": error.message,
                               "cellIndex": error.cell_index, "cellId": error.cell_id}
        queue.record_step(self.db, claim, step.name, record)
        return replace(error, stage=step.name) if error and not error.stage else error

    def _execute(self, claim: queue.Claim, step: Step, idea: dict, events: RunEmitter,
                 output: Path, publish: Callable[[bytes], None]) -> StepResult:
        """The step's notebook with the earlier steps' outputs as inputs, stoppable through
        `interrupt` while it runs."""
        run_dir = self._run_dir(claim)
        handle = StepHandle()
        with self._active_lock:
            self._active = handle
        try:
            run = self.db.runs.find_one({"_id": claim.run_id}, {"steps": 1}) or {}
            inputs = fetch_inputs(self.store, run.get("steps") or {}, step.name,
                                  run_dir / "inputs")
            return execute_step(
                step.notebook_path(self.notebooks_dir), output, step.parameters,
                cwd=run_dir / "cwd",
                offered={
                    "run_id": claim.run_id, "stage": step.name, "idea": idea,
                    "inputs": inputs or None,  # none yet: a step that needs them is refused
                    "events_url": self.settings.control_plane_url,
                    "event_source": self.source, "seq_path": str(run_dir / "events.seq"),
                    "spool_dir": str(self.spool_dir), "traceparent": events.traceparent,
                },
                secrets=self.secret_values(), limits=self._limits(step), handle=handle,
                on_event=lambda event_type, data: events.emit(event_type, stage=step.name,
                                                              **data),
                publish=publish, publish_every_s=self.settings.live_notebook_s,
                kernel_env=self.kernel_env(),
            )
        finally:
            with self._active_lock:
                self._active = None

    def _limits(self, step: Step) -> Limits:
        s = self.settings
        return Limits(cell_timeout_s=step.cell_timeout_s or s.cell_timeout_s,
                      step_timeout_s=step.timeout_s or s.step_timeout_s,
                      start_timeout_s=s.kernel_start_timeout_s)

    def _fail(self, claim: queue.Claim, events: RunEmitter, failure: Failure) -> None:
        if failure.code == "LEASE_LOST":
            # Another worker holds the run now; what happens to it is theirs to report.
            log.warning("run %s: lease lost, stopped without reporting", claim.run_id)
            return
        data = failure.event_data(claim.run_id)
        data.pop("run_id")
        if isinstance(failure, StepError) and failure.cell_index is not None:
            # where `aisci debug` opens the notebook
            data.update(cell_index=failure.cell_index, cell_id=failure.cell_id)
        events.emit("ai.run.failed", **data)
        queue.set_status(self.db, claim, RunStatus.FAILED, {
            "failedAt": utcnow(), "errorType": failure.code, "errorMessage": failure.message,
            "errorTraceback": failure.traceback,
        })


def install_excepthook(worker: Worker) -> None:
    """An exception that escapes every guard still ends the current run with ai.run.failed."""

    def report(exc: BaseException) -> None:
        events = worker.current
        if events is not None:
            with contextlib.suppress(Exception):
                events.emit("ai.run.failed", **{
                    k: v for k, v in from_exception(exc).event_data(events.run_id).items()
                    if k != "run_id"})
                worker.emitter.flush(timeout_s=10)

    previous = sys.excepthook

    def hook(exc_type, exc, tb) -> None:
        report(exc)
        previous(exc_type, exc, tb)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            report(args.exc_value)
        threading.__excepthook__(args)

    sys.excepthook = hook
    threading.excepthook = thread_hook


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="worker.py", description="Run research steps from the queue.")
    p.add_argument("--mode", choices=[m.value for m in WorkerMode],
                   help="what to claim (default: WORKER_MODE, else experiment)")
    p.add_argument("--region", help="only take runs of this region (and runs without one)")
    p.add_argument("--max-runs", type=int, help="exit after this many runs")
    p.add_argument("--exit-when-idle", action="store_true", help="exit when the queue is empty")
    p.add_argument("--notebooks-dir", type=Path, default=NOTEBOOKS_DIR)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in {"worker_mode": args.mode, "worker_region": args.region}.items()
                 if v is not None}
    settings = load_settings(**overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if settings.worker_mode is not WorkerMode.EXPERIMENT:
        log.error("mode %s is not served yet; use --mode experiment", settings.worker_mode.value)
        return 2
    db = connect(settings)
    ensure_indexes(db)
    worker = Worker(settings, db, open_store(settings), notebooks_dir=args.notebooks_dir)
    install_excepthook(worker)
    log.info("worker %s ready (mode %s)", worker.pod_id, settings.worker_mode.value)
    worker.run_forever(max_runs=args.max_runs, exit_when_idle=args.exit_when_idle)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
