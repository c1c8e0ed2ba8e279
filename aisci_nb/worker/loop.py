"""The headless worker: claim work, execute its step notebooks under a lease, report, repeat.

MongoDB is written directly for what the queue owns (claim, status, step records, fenced by
the lease epoch); everything else reaches the read model as CloudEvents through the control
plane. Every executed notebook is uploaded, a failed one above all. One emitter serves the
whole process: a control plane outage never stalls the work, the events wait in the spool.
A re-claimed run skips its finished steps and goes on from there; their outputs reach the
later steps as inputs, from the artifact store. A worker whose lease was taken over stops
the kernel and writes and emits nothing more for that run.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from pymongo.database import Database
from pymongo.errors import ConnectionFailure
from pymongo.uri_parser import parse_uri
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from ..contract import runtoken
from ..contract.failures import Failure, from_exception
from ..contract.lifecycle import RunStatus
from ..contract.runinfo import PARAMETER as RUN_INFO
from ..contract.runinfo import RUN_TOKEN_ENV, RunInfo
from ..contract.scrub import Scrubber, install_log_scrubber
from ..contract.tracing import new_trace_id, traceparent
from ..db import connect, ensure_indexes, utcnow
from ..events.emitter import Emitter, HttpSink, RunEmitter, SequenceCounter, Sink
from ..events.spool import Spool
from ..queue import claims
from ..queue.lease import LeaseKeeper
from ..queue.pickup import Pickup
from ..queue.queue_log import log_hand_back
from ..queue.reaper import Reaper
from ..runtime.execute import Limits, StepError, StepHandle, StepResult, execute_step
from ..settings import Settings, WorkerMode, load_settings
from ..storage.outbox import OUTBOX_ENV, Drainer
from ..storage.store import ArtifactStore, StorageError, StoredObject, open_store
from . import ideation
from .pipelines import EXPERIMENT_STEPS, NOTEBOOKS_DIR, Step
from .stepio import fetch_inputs, read_outputs
from .telemetry import gpu_name, gpu_sample

log = logging.getLogger("aisci.worker")
T = TypeVar("T")
LOST = "LOST"  # what `process` answers for a run whose lease was taken over
LOST_CODE = "LEASE_LOST"  # a step stopped because of it
# Never in a kernel's environment: credentials of the worker, the store and the database.
# (LLM keys stay: notebooks call the models, and every output is scrubbed of them.)
KERNEL_DROPPED_ENV = frozenset({
    "AISCI_API_KEY", "AISCI_RUN_TOKEN", "INGEST_API_KEYS", "AISCI_INGEST_AUTH", "MONGODB_URL",
    "MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "AISCI_UI_TOKEN", "METRICS_TOKEN", "AISCI_NEW_PASSWORD"})


def with_db_retry(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Retry a write while MongoDB is unreachable (a restart, an election): every queue write
    is conditional, so doing it again is harmless."""
    retrying = Retrying(retry=retry_if_exception_type(ConnectionFailure), reraise=True,
                        wait=wait_exponential(0.2, max=5), stop=stop_after_delay(300))
    return retrying(fn, *args, **kwargs)


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
class RunSession:
    """One claimed document in this worker: its events, its lease keeper, and why it must
    stop (taken over, canceled, released at shutdown), if it must."""

    claim: claims.Claim
    events: RunEmitter | None  # None for an ideation request (its events carry no run)
    lease: LeaseKeeper | None = None
    releasing: bool = False

    @property
    def lost(self) -> bool:
        return self.lease is not None and self.lease.lost.is_set()

    @property
    def canceled(self) -> dict | None:
        return self.lease.cancel if self.lease else None

    @property
    def interrupted(self) -> bool:
        return self.lost or self.canceled is not None or self.releasing

    def stop_reason(self) -> tuple[str, str] | None:
        """(code, message) for the running step's `StepHandle.cancel`, if it must stop."""
        if self.lost:
            return LOST_CODE, "another worker took the run over"
        if self.canceled is not None:
            return "CANCELED", f"canceled by {self.canceled.get('by') or 'someone'}"
        if self.releasing:
            return "RELEASED", "the worker is shutting down; another one resumes the run"
        return None

    def emit(self, event_type: str, **data: Any) -> None:
        """Emit for the run, unless the lease was taken over: then this worker says nothing."""
        if self.events is not None and not self.lost:
            self.events.emit(event_type, **data)


@dataclass
class Worker:
    settings: Settings
    db: Database
    store: ArtifactStore
    notebooks_dir: Path = NOTEBOOKS_DIR
    steps: tuple[Step, ...] = EXPERIMENT_STEPS
    drain: bool = False  # on SIGTERM, finish the current run instead of releasing it
    emitter: Emitter = field(init=False)
    scrubber: Scrubber = field(init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _session: RunSession | None = field(default=None, init=False, repr=False)
    _active: StepHandle | None = field(default=None, init=False, repr=False)
    _active_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.scrubber = Scrubber(self.secret_values())
        self.emitter = Emitter(self._sink(), source=self.source, spool=Spool(
            self.spool_dir, max_bytes=self.settings.spool_max_bytes), scrubber=self.scrubber)
        self.emitter.adopt_orphans()

    def _sink(self) -> Sink:
        key = self.settings.aisci_api_key
        return HttpSink(self.settings.control_plane_url, key.get_secret_value() if key else None,
                        hmac=self.settings.aisci_ingest_auth == "hmac")

    @property
    def active_step(self) -> StepHandle | None:
        """The running step's handle (its kernel's pid, whether it was stopped), if any."""
        with self._active_lock:
            return self._active

    def interrupt(self, code: str = "CANCELED", message: str = "the run was canceled") -> bool:
        """Stop the running step from another thread (the seam for cancel, lease loss and
        shutdown): its kernel is interrupted, then killed after `STOP_GRACE_S`, and the step
        fails with `code`. Returns whether a step was running."""
        handle = self.active_step
        if handle is None:
            return False
        handle.cancel(code, message)
        return True

    def secret_values(self) -> list[str]:
        """The credentials this worker holds; refused in parameters, kept out of notebooks."""
        s = self.settings
        found = [s.aisci_api_key, s.minio_secret_key, s.openai_api_key, s.anthropic_api_key,
                 s.aisci_ui_token, s.metrics_token, *s.ingest_api_keys]
        values = [v.get_secret_value() for v in found if v and v.get_secret_value()]
        with contextlib.suppress(Exception):  # the database password, if the URL has one
            password = parse_uri(s.mongodb_url).get("password")
            if password:
                values.append(password)
        return values

    def run_token(self, claim: claims.Claim) -> str | None:
        """The kernel's credential: good for this run and lease epoch only, until it expires."""
        key = self.settings.aisci_api_key
        if key is None:
            return None
        token = runtoken.mint(key.get_secret_value(), claim.run_id, claim.epoch,
                              self.settings.run_token_ttl_s)
        self.scrubber.add(token)  # a kernel that prints it leaks nothing either
        return token

    def kernel_env(self, run_token: str | None = None, outbox: Path | None = None
                   ) -> dict[str, str]:
        """The kernel's environment: a run-scoped token and an outbox for artifacts, never
        the worker's key, the store's secret or the database (and never through parameters,
        which land in the executed notebook). LLM keys stay: notebooks call the models; every
        output is scrubbed of them."""
        env = {k: v for k, v in os.environ.items() if k.upper() not in KERNEL_DROPPED_ENV}
        if run_token:
            env[RUN_TOKEN_ENV] = run_token
        if outbox is not None:
            env[OUTBOX_ENV] = str(outbox)
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

    @property
    def current(self) -> RunEmitter | None:
        """The events of the run in hand, while the lease is ours (for the excepthook)."""
        session = self._session
        return session.events if session is not None and not session.lost else None

    @property
    def kinds(self) -> tuple[claims.QueueKind, ...]:
        """What this worker claims, in order: `hybrid` serves ideation first."""
        mode = self.settings.worker_mode
        if mode is WorkerMode.IDEATION:
            return (claims.IDEATION,)
        if mode is WorkerMode.HYBRID:
            return (claims.IDEATION, claims.RUNS)
        return (claims.RUNS,)

    @property
    def policy(self) -> claims.RetryPolicy:
        s = self.settings
        return claims.RetryPolicy(s.max_attempts, s.retry_backoff_s, s.retry_backoff_max_s)

    def request_stop(self) -> None:
        """SIGTERM/SIGINT: claim nothing more and release the current run (its finished steps
        kept) so that another worker resumes it; with `drain`, finish it first. A second
        signal releases even when draining. Safe in a signal handler: it only sets flags."""
        if self._stopping.is_set():
            self.drain = False
        self._stopping.set()
        session = self._session
        if session is not None and not self.drain:
            session.releasing = True
            self.interrupt(*session.stop_reason())

    def claim(self) -> claims.Claim | None:
        for kind in self.kinds:
            got = claims.claim_next(self.db, self.pod_id, lease_s=self.settings.lease_s,
                                   region=self.settings.worker_region, kind=kind)
            if got is not None:
                return got
        return None

    def run_forever(self, max_runs: int | None = None, exit_when_idle: bool = False) -> int:
        """Claim and process until stopped, `max_runs` are done, or (if asked) idle."""
        reaper = Reaper(self.db, self.kinds, self.policy, interval_s=self.settings.reap_interval_s,
                        source=self.source).start()
        pickup = Pickup(self.db, self.kinds, poll_interval_s=self.settings.poll_interval_s,
                        use_change_streams=self.settings.change_streams, stopping=self._stopping)
        done = 0
        try:
            while max_runs is None or done < max_runs:
                claim = pickup.next_claim(self.claim, exit_when_idle=exit_when_idle)
                if claim is None:
                    break
                self.process(claim)
                done += 1
        finally:
            reaper.stop()
            self.emitter.close(timeout_s=self.settings.emit_flush_timeout_s)
        return done

    # -- one claimed document ------------------------------------------------------------

    def _run_dir(self, claim: claims.Claim) -> Path:
        return (self.settings.work_dir / claim.run_id).resolve()

    def _run_emitter(self, claim: claims.Claim) -> RunEmitter:
        """The run's sequence (shared with its kernels, starting in the block this epoch
        reserved), its trace (kept across attempts) and its lease epoch."""
        trace_id = claim.run.get("traceId")
        if not trace_id:
            trace_id = new_trace_id()
            self.db.runs.update_one(claims.fenced_filter(claim), {"$set": {"traceId": trace_id}})
        seq = SequenceCounter(self._run_dir(claim) / "events.seq", floor=claim.seq_floor)
        return RunEmitter(self.emitter, claim.run_id, sequence=seq,
                          traceparent=traceparent(trace_id), epoch=claim.epoch)

    def _open(self, claim: claims.Claim) -> RunSession:
        s = self.settings
        events = self._run_emitter(claim) if claim.kind is claims.RUNS else None
        session = RunSession(claim, events)

        def stop(_flag: dict | None = None) -> None:
            self.interrupt(*session.stop_reason())

        session.lease = LeaseKeeper(
            self.db, claim, lease_s=s.lease_s, renew_s=s.lease_renew_s, check_s=s.cancel_check_s,
            on_lost=stop, on_cancel=stop,
            on_renew=lambda: session.emit("ai.run.heartbeat", **self._telemetry()),
        ).start()
        self._session = session
        if self._stopping.is_set() and not self.drain:
            session.releasing = True  # the signal came while we were claiming
        return session

    def _telemetry(self) -> dict[str, Any]:
        """GPU utilisation, memory and temperature for the heartbeat; none on a CPU pod."""
        sample = gpu_sample()
        return sample.heartbeat_data() if sample else {}

    def process(self, claim: claims.Claim) -> str:
        """Carry one claimed document as far as it goes: its final status, QUEUED when it
        was released or re-queued for a retry, or LOST when the lease was taken over."""
        session = self._open(claim)
        try:
            if claim.kind is claims.IDEATION:
                return self._ideate(session)
            return self._carry(session)
        except Exception as exc:  # the main loop's guard: every failure reaches the user
            if session.lost:
                log.warning("%s %s: lease lost (%s)", claim.kind.name, claim.run_id, exc)
                return LOST
            log.exception("%s %s failed in the worker", claim.kind.name, claim.run_id)
            return self._fail(session, from_exception(exc))
        finally:
            self._session = None
            if session.lease:
                session.lease.stop()
            if session.events is not None and session.events.sequence is not None:
                session.events.sequence.close()
            if not self.emitter.flush(timeout_s=self.settings.emit_flush_timeout_s):
                log.warning("%s %s: events not yet delivered; they wait in the spool",
                            claim.kind.name, claim.run_id)

    def _carry(self, session: RunSession) -> str:
        claim = session.claim
        run_id = claim.run_id
        started = time.monotonic()
        log.info("claimed run %s (attempt %s, epoch %s)", run_id, claim.run.get("attempt"),
                 claim.epoch)
        pod = {"id": self.pod_id, "gpu": gpu_name(), "region": self.settings.worker_region}
        if not with_db_retry(claims.set_status, self.db, claim, RunStatus.RUNNING,
                             {"startedAt": utcnow(), "pod": pod}):
            session.lease.lost.set()
            return self._interrupted(session)
        session.emit("ai.run.started", pod_id=pod["id"], gpu=pod["gpu"], region=pod["region"])
        idea = self._idea(claim)
        finished = {name for name, record in (claim.run.get("steps") or {}).items()
                    if record.get("status") == "COMPLETED"}
        if finished:
            log.info("run %s resumes after %s", run_id, ", ".join(sorted(finished)))
        for step in self.steps:
            if session.interrupted:
                break
            if step.name in finished:
                continue  # its outputs reach the later steps as their inputs
            failure = self._run_step(session, step, idea)
            self.emitter.adopt_orphans()  # what the step's kernel could not deliver
            if session.interrupted:
                break
            if failure:
                return self._fail(session, failure)
        if session.interrupted:
            return self._interrupted(session)
        total_s = round(time.monotonic() - started, 3)
        session.lease.stop()  # our own final write must not look like a takeover to it
        if not with_db_retry(claims.set_status, self.db, claim, RunStatus.COMPLETED,
                             {"completedAt": utcnow(), "totalDuration_s": total_s}):
            return LOST
        session.emit("ai.run.completed", total_duration_s=total_s)
        return RunStatus.COMPLETED.value

    def _idea(self, claim: claims.Claim) -> dict:
        hyp_id = claim.run.get("hypothesisId")
        hyp = self.db.hypotheses.find_one({"_id": hyp_id}) if hyp_id else None
        if hyp is None:
            raise LookupError(f"run {claim.run_id}: hypothesis {hyp_id!r} not found")
        idea = hyp.get("ideaJson")
        if not isinstance(idea, dict):
            raise ValueError(f"hypothesis {hyp_id}: ideaJson is missing or not an object")
        return idea

    def _run_step(self, session: RunSession, step: Step, idea: dict) -> Failure | None:
        claim = session.claim
        events = session.events
        run_dir = self._run_dir(claim)
        output = run_dir / "notebooks" / f"{step.name}.ipynb"
        key = step.artifact_key(claim.run_id)
        started_at = utcnow()
        if not with_db_retry(claims.record_step, self.db, claim, step.name, {
                "status": "RUNNING", "startedAt": started_at, "completedAt": None,
                "attempt": claim.run.get("attempt"), "epoch": claim.epoch, "pod": self.pod_id}):
            session.lease.lost.set()
            return None

        def registered(stored: StoredObject, **extra: Any) -> None:
            session.emit("ai.artifact.registered", key=stored.key, bytes=stored.size,
                         sha256=stored.sha256, content_type=stored.content_type,
                         kind="notebook", **extra)

        drainer = Drainer(run_dir / "outbox", (f"runs/{claim.run_id}/",), self.store,
                          self.scrubber, session.emit)

        def publish(data: bytes) -> None:  # the running notebook, for the UI's live view
            if not session.lost:  # a taken-over run's notebook is the new holder's
                drainer.drain()
                registered(self.store.put_bytes(key, self.scrubber.bytes(data),
                                                "application/x-ipynb+json"), live=True)

        try:
            result = off_main_thread(
                lambda: self._execute(session, step, idea, events, output, publish))
        except StorageError as exc:  # the inputs could not be fetched
            result, error = None, StepError("STORAGE_ERROR", str(exc))
        self._resend_kernel_spool(claim)
        lost = result is not None and result.error is not None and result.error.code == LOST_CODE
        if lost or session.lost or not with_db_retry(claims.holds, self.db, claim):
            session.lease.lost.set()  # taken over: the notebook and outputs are not ours
            return None
        outputs: dict[str, str] = {}
        if result is not None:
            error = result.error
            failed_uploads = drainer.drain()
            if failed_uploads and error is None:
                error = StepError("STORAGE_ERROR", "; ".join(failed_uploads)[:2000])
            if output.exists():
                try:
                    output.write_bytes(self.scrubber.bytes(output.read_bytes()))
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
        status = "COMPLETED" if error is None else "FAILED"
        if error is not None and error.code in ("CANCELED", "RELEASED"):
            status = error.code
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
        with_db_retry(claims.finish_step, self.db, claim, step.name, record)
        return replace(error, stage=step.name) if error and not error.stage else error

    def _execute(self, session: RunSession, step: Step, idea: dict, events: RunEmitter,
                 output: Path, publish: Callable[[bytes], None]) -> StepResult:
        """The step's notebook with the earlier steps' outputs as inputs, stoppable through
        `interrupt` while it runs."""
        claim = session.claim
        run_dir = self._run_dir(claim)
        handle = StepHandle()
        with self._active_lock:
            self._active = handle
        if (reason := session.stop_reason()) is not None:
            handle.cancel(*reason)  # asked to stop just before this step began
        try:
            run = self.db.runs.find_one({"_id": claim.run_id}, {"steps": 1}) or {}
            inputs = fetch_inputs(self.store, run.get("steps") or {}, step.name,
                                  run_dir / "inputs")
            token = self.run_token(claim)
            return execute_step(
                step.notebook_path(self.notebooks_dir), output, step.parameters,
                cwd=run_dir / "cwd",
                offered={RUN_INFO: self.run_info(claim, idea, inputs, events).model_dump(),
                         "stage": step.name},
                secrets=[*self.secret_values(), *([token] if token else [])],
                requires=step.requires,
                limits=self._limits(step), handle=handle,
                on_event=lambda event_type, data: session.emit(event_type, stage=step.name,
                                                               **data),
                publish=publish, publish_every_s=self.settings.live_notebook_s,
                kernel_env=self.kernel_env(token, run_dir / "outbox"), scrubber=self.scrubber,
            )
        finally:
            with self._active_lock:
                self._active = None

    def _resend_kernel_spool(self, claim: claims.Claim) -> None:
        """What the step's kernel could not deliver goes now, still under its run token:
        never with this worker's key (the kernel wrote those lines)."""
        spool_dir = self._run_dir(claim) / "kernel-spool"
        if not spool_dir.is_dir():
            return
        sink = HttpSink(self.settings.control_plane_url, self.run_token(claim))
        emitter = Emitter(sink, source=self.source, spool=Spool(spool_dir),
                          scrubber=self.scrubber)
        if emitter.adopt_orphans():
            emitter.flush(timeout_s=self.settings.emit_flush_timeout_s)
        emitter.close(timeout_s=1)

    def run_info(self, claim: claims.Claim, idea: dict, inputs: dict[str, dict[str, str]],
                 events: RunEmitter) -> RunInfo:
        """The one parameter a step notebook gets: all it needs to report and to work."""
        run_dir = self._run_dir(claim)
        return RunInfo(
            run_id=claim.run_id, idea=idea, inputs=inputs or None,
            events_url=self.settings.control_plane_url, event_source=self.source,
            seq_path=str(run_dir / "events.seq"), spool_dir=str(run_dir / "kernel-spool"),
            spool_max_bytes=self.settings.spool_max_bytes, traceparent=events.traceparent,
            lease_epoch=claim.epoch)

    def _limits(self, step: Step) -> Limits:
        s = self.settings
        return Limits(cell_timeout_s=step.cell_timeout_s or s.cell_timeout_s,
                      step_timeout_s=step.timeout_s or s.step_timeout_s,
                      start_timeout_s=s.kernel_start_timeout_s, cancel_grace_s=s.stop_grace_s)

    def _fail(self, session: RunSession, failure: Failure) -> str:
        """Re-queue a retryable failure while attempts are left, else fail the run for good."""
        claim = session.claim
        if session.lease:
            session.lease.stop()
        detail = self.scrubber.obj({"code": failure.code, "message": failure.message,
                                    "traceback": failure.traceback, "stage": failure.stage})
        detail["at"] = utcnow()
        done = with_db_retry(claims.retry_or_fail, self.db, claim, detail,
                             retryable=failure.retryable, policy=self.policy)
        if done is None:
            return LOST
        if done.status == "QUEUED":
            log.warning("%s %s: %s (retryable); re-queued as attempt %s, visible at %s",
                        claim.kind.name, claim.run_id, failure.code, done.attempt,
                        done.visible_at)
        if done.status == RunStatus.CANCELED:
            flag = session.canceled or {}
            session.emit("ai.run.canceled", by=flag.get("by"), reason=flag.get("reason"))
        else:
            # Emitted after the write: a re-queued run's event carries the old epoch, so the
            # control plane logs it without touching the run.
            data = failure.event_data(claim.run_id)
            data.pop("run_id")
            if isinstance(failure, StepError) and failure.cell_index is not None:
                # where `aisci debug` opens the notebook
                data.update(cell_index=failure.cell_index, cell_id=failure.cell_id)
            session.emit("ai.run.failed", **data)
        return done.status

    def _interrupted(self, session: RunSession) -> str:
        """End a run that was stopped: taken over, canceled, or released at shutdown."""
        claim = session.claim
        if session.lost:
            log.warning("%s %s: lease epoch %s was taken over; dropped it", claim.kind.name,
                        claim.run_id, claim.epoch)
            return LOST
        session.lease.stop()
        if session.canceled is not None:
            flag = session.canceled
            if not with_db_retry(claims.set_status, self.db, claim, RunStatus.CANCELED,
                                 {"canceledAt": utcnow()}):
                return LOST
            session.emit("ai.run.canceled", by=flag.get("by"), reason=flag.get("reason"))
            log.info("run %s canceled", claim.run_id)
            return RunStatus.CANCELED.value
        done = with_db_retry(claims.release, self.db, claim)
        if done is None:
            return LOST
        if claim.kind is claims.RUNS:
            log_hand_back(self.db, claim.run_id, done, source=self.source,
                          reason=f"released by {self.pod_id} shutting down")
        log.info("%s %s released (%s)", claim.kind.name, claim.run_id, done.status)
        return done.status

    def _ideate(self, session: RunSession) -> str:
        claim = session.claim
        log.info("claimed ideation request %s", claim.run_id)
        hypothesis = ideation.start(self.db, claim)
        try:
            ideas, error = ideation.generate_ideas(hypothesis, claim.run), None
        except ValueError as exc:
            ideas, error = [], str(exc)
        if session.interrupted:
            return self._interrupted(session)
        session.lease.stop()
        if not with_db_retry(ideation.finish, self.db, claim, ideas, error):
            return LOST
        if error is not None:
            log.warning("ideation request %s failed: %s", claim.run_id, error)
            return "FAILED"
        self.emitter.emit("ai.ideation.generated", {
            "hypothesis_id": claim.run["hypothesisId"], "request_id": claim.run_id,
            "count": len(ideas)}, epoch=claim.epoch)
        return "COMPLETED"


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
    p = argparse.ArgumentParser(prog="worker.py", description="Run research steps from the claims.")
    p.add_argument("--mode", choices=[m.value for m in WorkerMode],
                   help="what to claim (default: WORKER_MODE, else experiment)")
    p.add_argument("--region", help="only take runs of this region (and runs without one)")
    p.add_argument("--max-runs", type=int, help="exit after this many runs")
    p.add_argument("--exit-when-idle", action="store_true", help="exit when the queue is empty")
    p.add_argument("--drain", action="store_true",
                   help="on SIGTERM/SIGINT finish the current run before exiting "
                        "(default: release it to another worker)")
    p.add_argument("--notebooks-dir", type=Path, default=NOTEBOOKS_DIR)
    return p


def main(argv: list[str] | None = None, *, steps: tuple[Step, ...] = EXPERIMENT_STEPS) -> int:
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in {"worker_mode": args.mode, "worker_region": args.region}.items()
                 if v is not None}
    settings = load_settings(**overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    db = connect(settings)
    with_db_retry(ensure_indexes, db)
    worker = Worker(settings, db, open_store(settings), notebooks_dir=args.notebooks_dir,
                    steps=steps, drain=args.drain)
    install_log_scrubber(worker.scrubber)  # the worker's log never shows a secret
    install_excepthook(worker)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.request_stop())
    log.info("worker %s ready (mode %s, region %s)", worker.pod_id, settings.worker_mode.value,
             settings.worker_region or "any")
    worker.run_forever(max_runs=args.max_runs, exit_when_idle=args.exit_when_idle)
    log.info("worker %s stopped", worker.pod_id)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
