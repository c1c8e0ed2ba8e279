"""The headless worker: claim work, carry it under a lease, report, repeat.

MongoDB is written directly for what the queue owns (claim, status, step records, fenced by
the lease epoch); everything else reaches the read model as CloudEvents through the control
plane. One emitter serves the whole process: a control plane outage never stalls the work,
the events wait in the spool. A worker whose lease was taken over stops the kernel and
writes and emits nothing more for that run.

What varies is injected, so tests and benchmarks use the real worker: the `sink` events go
to, the `steps` (a pipeline) it carries, the `run_step` that carries one step (default: the
notebook `StepRunner`), and the `clock` durations are measured with.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymongo.database import Database

from ..contract.failures import FailureCode, from_exception
from ..contract.lifecycle import Outcome
from ..contract.scrub import Scrubber
from ..contract.tracing import new_trace_id, traceparent
from ..events.emitter import Emitter, HttpSink, RunEmitter, SequenceCounter, Sink
from ..events.spool import Spool
from ..queue import claims
from ..queue.dbretry import with_db_retry
from ..queue.lease import LeaseKeeper
from ..queue.pickup import Pickup
from ..queue.reaper import Reaper
from ..runtime.execute import StepHandle
from ..settings import Settings, WorkerMode
from ..storage.store import ArtifactStore
from . import run
from .kernel_env import KernelSpoolSink, secret_values
from .pipelines import EXPERIMENT, NOTEBOOKS_DIR, Step
from .session import RunSession
from .step import StepFn, StepRunner, run_dir
from .telemetry import gpu_sample

log = logging.getLogger("aisci.worker")


def control_plane_sink(settings: Settings) -> Sink:
    key = settings.aisci_api_key
    return HttpSink(settings.control_plane_url, key.get_secret_value() if key else None,
                    hmac=settings.aisci_ingest_auth == "hmac")


@dataclass
class Worker:
    settings: Settings
    db: Database
    store: ArtifactStore
    notebooks_dir: Path = NOTEBOOKS_DIR
    steps: Iterable[Step] = EXPERIMENT  # a Pipeline, or any sequence of steps
    drain: bool = False  # on SIGTERM, finish the current run instead of releasing it
    sink: Sink | None = None  # where events go; default: the control plane
    run_step: StepFn | None = None  # carries one step; default: a notebook StepRunner
    clock: Callable[[], float] = time.monotonic
    emitter: Emitter = field(init=False)
    scrubber: Scrubber = field(init=False)
    kernel_spools: list[Emitter] = field(init=False, default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _session: RunSession | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.steps = tuple(self.steps)
        # One scrubber for all the worker sends: events, notebooks, artifacts, its log.
        self.scrubber = Scrubber(secret_values(self.settings))
        self.emitter = Emitter(self.sink or control_plane_sink(self.settings),
                               source=self.source, spool=Spool(
                                   self.spool_dir, max_bytes=self.settings.spool_max_bytes),
                               scrubber=self.scrubber)
        self.emitter.adopt_orphans()
        # What kernels of earlier processes could not deliver (a control plane outage), each
        # line under a token for its own run and epoch, in the background like the rest.
        for spool_dir in sorted(self.settings.work_dir.resolve().glob("*/kernel-spool")):
            emitter = Emitter(KernelSpoolSink(self.settings), source=self.source,
                              spool=Spool(spool_dir), scrubber=self.scrubber)
            if emitter.adopt_orphans():
                self.kernel_spools.append(emitter)
            else:
                emitter.close(timeout_s=1)
        self.runner = StepRunner(self.settings, self.db, self.store, self.notebooks_dir,
                                 self.source, scrubber=self.scrubber)
        if self.run_step is None:
            self.run_step = self.runner

    @property
    def active_step(self) -> StepHandle | None:
        """The running step's handle (its kernel's pid, whether it was stopped), if any."""
        return self.runner.active

    def interrupt(self, code: str = FailureCode.CANCELED,
                  message: str = "the run was canceled") -> bool:
        """Stop the running step from another thread (the seam for cancel, lease loss and
        shutdown): its kernel is interrupted, then killed after `STOP_GRACE_S`, and the step
        fails with `code`. Returns whether a step was running."""
        handle = self.active_step
        if handle is None:
            return False
        handle.cancel(code, message)
        return True

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
            got = with_db_retry(claims.claim_next, self.db, self.pod_id,
                                lease_s=self.settings.lease_s,
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
            for emitter in self.kernel_spools:
                emitter.close(timeout_s=self.settings.emit_flush_timeout_s)
        return done

    # -- one claimed document ------------------------------------------------------------

    def _run_emitter(self, claim: claims.Claim) -> RunEmitter:
        """The run's sequence (shared with its kernels, starting in the block this epoch
        reserved), its trace (kept across attempts) and its lease epoch."""
        trace_id = claim.run.get("traceId")
        if not trace_id:
            trace_id = new_trace_id()
            with_db_retry(self.db.runs.update_one, claims.fenced_filter(claim),
                          {"$set": {"traceId": trace_id}})
        seq = SequenceCounter(run_dir(self.settings, claim) / "events.seq",
                              floor=claim.seq_floor)
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

    def process(self, claim: claims.Claim) -> Outcome:
        """Carry one claimed document as far as it goes: its final status, QUEUED when it
        was released or re-queued for a retry, or LOST when the lease was taken over."""
        session = self._open(claim)
        try:
            if claim.kind is claims.IDEATION:
                return run.ideate(self, session)
            return run.carry(self, session)
        except Exception as exc:  # the main loop's guard: every failure reaches the user
            if session.lost:
                log.warning("%s %s: lease lost (%s)", claim.kind.name, claim.run_id, exc)
                return Outcome.LOST
            log.exception("%s %s failed in the worker", claim.kind.name, claim.run_id)
            return run.fail(self, session, from_exception(exc))
        finally:
            self._close(session)

    def _close(self, session: RunSession) -> None:
        claim = session.claim
        self._session = None
        if session.lease:
            session.lease.stop()
        if session.events is not None and session.events.sequence is not None:
            session.events.sequence.close()
        if not self.emitter.flush(timeout_s=self.settings.emit_flush_timeout_s):
            log.warning("%s %s: events not yet delivered; they wait in the spool",
                        claim.kind.name, claim.run_id)
