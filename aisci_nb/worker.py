"""The headless worker: claim work, execute its step notebooks under a lease, report, repeat.

MongoDB is written directly for what the queue owns (claim, status, step records, fenced by
the lease epoch); everything else reaches the read model as CloudEvents through the control
plane. Every executed notebook is uploaded, a failed one above all. One emitter serves the
whole process: a control plane outage never stalls the work, the events wait in the spool.
A re-claimed run skips its finished steps, gets their outputs back from the artifact store
and goes on from there. A worker whose lease was taken over stops the kernel and writes and
emits nothing more for that run.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pymongo.database import Database
from pymongo.errors import ConnectionFailure
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from . import ideation, queue, resume
from .db import connect, ensure_indexes, utcnow
from .emitter import Emitter, HttpSink, RunEmitter, SequenceCounter, Sink
from .failures import Failure, from_exception
from .kernel import API_KEY_ENV, AUTH_MODE_ENV
from .lease import LeaseKeeper
from .lifecycle import RunStatus
from .pickup import Pickup
from .pipeline import EXPERIMENT_STEPS, NOTEBOOKS_DIR, Step
from .queue_log import log_hand_back
from .reaper import Reaper
from .runner import StepControl, execute_step
from .settings import Settings, WorkerMode, load_settings
from .spool import Spool
from .store import ArtifactStore, open_store
from .telemetry import gpu_name, gpu_sample
from .tracing import new_trace_id, traceparent

log = logging.getLogger("aisci.worker")
T = TypeVar("T")
LOST = "LOST"  # what `process` answers for a run whose lease was taken over


def with_db_retry(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Retry a write while MongoDB is unreachable (a restart, an election): every queue write
    is conditional, so doing it again is harmless."""
    retrying = Retrying(retry=retry_if_exception_type(ConnectionFailure), reraise=True,
                        wait=wait_exponential(0.2, max=5), stop=stop_after_delay(300))
    return retrying(fn, *args, **kwargs)


@dataclass
class RunSession:
    """One claimed document in this worker: its events, lease keeper and step control."""

    claim: queue.Claim
    events: RunEmitter | None  # None for an ideation request (its events carry no run)
    control: StepControl
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

    def emit(self, event_type: str, **data: Any) -> None:
        """Emit for the run, unless the lease was taken over: then this worker says nothing."""
        if self.events is not None and not self.lost:
            self.events.emit(event_type, **data)

    def drop(self, grace_s: float) -> None:
        """The lease is gone (found by a write or a check of ours): stop everything."""
        if self.lease is not None:
            self.lease.lost.set()
        self.control.stop(LOST, grace_s)

    def release(self, grace_s: float) -> None:
        self.releasing = True
        self.control.stop("RELEASED", grace_s)


@dataclass
class Worker:
    settings: Settings
    db: Database
    store: ArtifactStore
    notebooks_dir: Path = NOTEBOOKS_DIR
    steps: tuple[Step, ...] = EXPERIMENT_STEPS
    drain: bool = False  # on SIGTERM, finish the current run instead of releasing it
    emitter: Emitter = field(init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _session: RunSession | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.emitter = Emitter(self._sink(), source=self.source, spool=Spool(
            self.spool_dir, max_bytes=self.settings.spool_max_bytes))
        self.emitter.adopt_orphans()

    def _sink(self) -> Sink:
        key = self.settings.aisci_api_key
        return HttpSink(self.settings.control_plane_url, key.get_secret_value() if key else None,
                        hmac=self.settings.aisci_ingest_auth == "hmac")

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
    def kinds(self) -> tuple[queue.QueueKind, ...]:
        """What this worker claims, in order: `hybrid` serves ideation first."""
        mode = self.settings.worker_mode
        if mode is WorkerMode.IDEATION:
            return (queue.IDEATION,)
        if mode is WorkerMode.HYBRID:
            return (queue.IDEATION, queue.RUNS)
        return (queue.RUNS,)

    @property
    def policy(self) -> queue.RetryPolicy:
        s = self.settings
        return queue.RetryPolicy(s.max_attempts, s.retry_backoff_s, s.retry_backoff_max_s)

    def request_stop(self) -> None:
        """SIGTERM/SIGINT: claim nothing more and release the current run (its finished steps
        kept) so that another worker resumes it; with `drain`, finish it first. A second
        signal releases even when draining. Safe in a signal handler: it only sets flags."""
        if self._stopping.is_set():
            self.drain = False
        self._stopping.set()
        session = self._session
        if session is not None and not self.drain:
            session.release(self.settings.stop_grace_s)

    def claim(self) -> queue.Claim | None:
        for kind in self.kinds:
            got = queue.claim_next(self.db, self.pod_id, lease_s=self.settings.lease_s,
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

    def _run_dir(self, claim: queue.Claim) -> Path:
        return (self.settings.work_dir / claim.run_id).resolve()

    def _run_emitter(self, claim: queue.Claim) -> RunEmitter:
        """The run's sequence (shared with its kernels, starting in the block this epoch
        reserved), its trace (kept across attempts) and its lease epoch."""
        trace_id = claim.run.get("traceId")
        if not trace_id:
            trace_id = new_trace_id()
            self.db.runs.update_one(queue.fenced_filter(claim), {"$set": {"traceId": trace_id}})
        seq = SequenceCounter(self._run_dir(claim) / "events.seq", floor=claim.seq_floor)
        return RunEmitter(self.emitter, claim.run_id, sequence=seq,
                          traceparent=traceparent(trace_id), epoch=claim.epoch)

    def _open(self, claim: queue.Claim) -> RunSession:
        s = self.settings
        events = self._run_emitter(claim) if claim.kind is queue.RUNS else None
        session = RunSession(claim, events, StepControl())
        session.lease = LeaseKeeper(
            self.db, claim, lease_s=s.lease_s, renew_s=s.lease_renew_s, check_s=s.cancel_check_s,
            on_lost=lambda: session.control.stop(LOST, min(1.0, s.stop_grace_s)),
            on_cancel=lambda _flag: session.control.stop("CANCELED", s.stop_grace_s),
            on_renew=lambda: session.emit("ai.run.heartbeat", **self._telemetry()),
        ).start()
        self._session = session
        if self._stopping.is_set() and not self.drain:
            session.release(s.stop_grace_s)  # the signal came while we were claiming
        return session

    def _telemetry(self) -> dict[str, Any]:
        """GPU utilisation, memory and temperature for the heartbeat; none on a CPU pod."""
        sample = gpu_sample()
        return sample.heartbeat_data() if sample else {}

    def process(self, claim: queue.Claim) -> str:
        """Carry one claimed document as far as it goes: its final status, QUEUED when it
        was released or re-queued for a retry, or LOST when the lease was taken over."""
        session = self._open(claim)
        try:
            if claim.kind is queue.IDEATION:
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
        if not with_db_retry(queue.set_status, self.db, claim, RunStatus.RUNNING,
                             {"startedAt": utcnow(), "pod": pod}):
            session.drop(0)
            return self._interrupted(session)
        session.emit("ai.run.started", pod_id=pod["id"], gpu=pod["gpu"], region=pod["region"])
        idea = self._idea(claim)
        first = resume.restore(self.store, claim.run, self.steps, self._run_dir(claim) / "cwd")
        if first:
            log.info("run %s resumes at step %d of %d", run_id, first + 1, len(self.steps))
        for step in self.steps[first:]:
            if session.interrupted:
                break
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
        if not with_db_retry(queue.set_status, self.db, claim, RunStatus.COMPLETED,
                             {"completedAt": utcnow(), "totalDuration_s": total_s}):
            return LOST
        session.emit("ai.run.completed", total_duration_s=total_s)
        return RunStatus.COMPLETED.value

    def _idea(self, claim: queue.Claim) -> dict:
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
        run_dir = self._run_dir(claim)
        cwd = run_dir / "cwd"
        output = run_dir / "notebooks" / f"{step.name}.ipynb"
        before = resume.snapshot(cwd)
        started_at = utcnow()
        if not with_db_retry(queue.record_step, self.db, claim, step.name, {
                "status": "RUNNING", "startedAt": started_at, "completedAt": None,
                "attempt": claim.run.get("attempt"), "epoch": claim.epoch, "pod": self.pod_id}):
            session.drop(0)
            return None
        result = execute_step(
            step.notebook_path(self.notebooks_dir),
            output,
            {
                "run_id": claim.run_id,
                "stage": step.name,
                "idea": idea,
                "events_url": self.settings.control_plane_url,
                "event_source": self.source,
                "seq_path": str(run_dir / "events.seq"),
                "spool_dir": str(self.spool_dir),
                "traceparent": session.events.traceparent,
                "lease_epoch": claim.epoch,
            },
            cwd=cwd,
            control=session.control,
        )
        if session.lost or not with_db_retry(queue.holds, self.db, claim):
            session.drop(0)  # taken over: the notebook and outputs are the new holder's now
            return result.error
        outputs: dict[str, Any] = {}
        if output.exists():
            stored = self.store.put_file(step.artifact_key(claim.run_id), output)
            outputs["notebook"] = stored.key
            session.emit("ai.artifact.registered", key=stored.key, bytes=stored.size,
                         sha256=stored.sha256, content_type=stored.content_type,
                         kind="notebook")
        if result.ok and (changed := resume.changed_files(cwd, before)):
            outputs["files"] = resume.upload_outputs(self.store, claim.run_id, step.name, cwd,
                                                     changed)
        status = "COMPLETED" if result.ok else "FAILED"
        if result.error and result.error.code in ("CANCELED", "RELEASED"):
            status = result.error.code
        with_db_retry(queue.finish_step, self.db, claim, step.name, {
            "status": status, "startedAt": started_at, "completedAt": utcnow(),
            "duration_s": round(result.duration_s, 3), "outputs": outputs,
        })
        if result.error and not result.error.stage:
            return Failure(result.error.code, result.error.message, result.error.traceback,
                           step.name)
        return result.error

    def _fail(self, session: RunSession, failure: Failure) -> str:
        """Re-queue a retryable failure while attempts are left, else fail the run for good."""
        claim = session.claim
        if session.lease:
            session.lease.stop()
        detail = {"code": failure.code, "message": failure.message,
                  "traceback": failure.traceback, "stage": failure.stage, "at": utcnow()}
        done = with_db_retry(queue.retry_or_fail, self.db, claim, detail,
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
            if not with_db_retry(queue.set_status, self.db, claim, RunStatus.CANCELED,
                                 {"canceledAt": utcnow()}):
                return LOST
            session.emit("ai.run.canceled", by=flag.get("by"), reason=flag.get("reason"))
            log.info("run %s canceled", claim.run_id)
            return RunStatus.CANCELED.value
        done = with_db_retry(queue.release, self.db, claim)
        if done is None:
            return LOST
        if claim.kind is queue.RUNS:
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
    p = argparse.ArgumentParser(prog="worker.py", description="Run research steps from the queue.")
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
    if settings.aisci_api_key:
        # The kernel inherits the environment: this is how it authenticates, with the key
        # never written into a notebook parameter.
        os.environ[API_KEY_ENV] = settings.aisci_api_key.get_secret_value()
        os.environ[AUTH_MODE_ENV] = settings.aisci_ingest_auth
    db = connect(settings)
    with_db_retry(ensure_indexes, db)
    worker = Worker(settings, db, open_store(settings), notebooks_dir=args.notebooks_dir,
                    steps=steps, drain=args.drain)
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
