"""Executing one step notebook with papermill, and classifying how it ended.

`execute_step` validates the parameters against the notebook's declaration before any
kernel starts, runs the notebook through the `aisci` papermill engine with per-cell hooks,
offers live snapshots of the executing notebook, and honours a `StepHandle` through which
another thread (cancel, lease loss) or the step timeout interrupts and then kills the
kernel. The executed notebook is always written once a kernel ran, also when a cell raised:
papermill leaves its error banner and the failing cell's output in it.

Failure codes (`StepError.code`): the exception's name for an exception raised in a cell;
`OOMError` (MemoryError, torch's OutOfMemoryError); `KERNEL_DIED`; `TIMEOUT` (a cell, the
step or the kernel start took too long; retryable); `STORAGE_ERROR` (raised by the kernel's
storage helper; the worker uses it for its own uploads too); `OUTPUT_ERROR` (see
`find_output_error`); `INVALID_PARAMETER`; and whatever code `StepHandle.cancel` was given
(`CANCELED`, `LEASE_LOST`).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from ..contract import params
from ..contract.failures import Failure, FailureCode, code_for
from ..contract.scrub import Scrubber
from ..errors import StepStopped
from .engine import ENGINE_NAME, KernelSession

log = logging.getLogger("aisci.runner")


def _not_papermills_parameter_guess(record: logging.LogRecord) -> bool:
    # papermill's own parameter parser misses annotations like `str | None` and warns about
    # "unknown" parameters; `params.validate` has already checked them properly.
    return not record.getMessage().startswith("Passed unknown parameter")


logging.getLogger("papermill").addFilter(_not_papermills_parameter_guess)

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_DESCRIPTION = re.compile(r"papermill_description=(\S+)")

TRACEBACK_HEADER = "Traceback (most recent call last)"

EventCallback = Callable[[str, dict[str, Any]], None]
Publish = Callable[[bytes], None]


@dataclass(frozen=True)
class StepError(Failure):
    cell_index: int | None = None
    cell_id: str | None = None


@dataclass(frozen=True)
class StepResult:
    output_path: Path
    duration_s: float
    error: StepError | None = None
    kernel_pid: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Limits:
    """Time limits of one step; None means no limit."""

    cell_timeout_s: float | None = None
    step_timeout_s: float | None = None
    start_timeout_s: float = 60
    cancel_grace_s: float = 5  # between the interrupt and the kill

    # nbclient counts the cell and kernel-start timeouts in whole seconds: rounded up.
    @property
    def cell_s(self) -> int | None:
        return math.ceil(self.cell_timeout_s) if self.cell_timeout_s else None

    @property
    def start_s(self) -> int:
        return max(1, math.ceil(self.start_timeout_s))


class StepHandle:
    """The seam for stopping a running step from another thread.

    `cancel(code, message)` interrupts the kernel (SIGINT to its process group), waits
    `Limits.cancel_grace_s` for the cell to stop, then kills the kernel; the step ends
    with a `StepError` carrying `code` (`CANCELED`, `LEASE_LOST`, ...). Safe to call at any
    time and more than once: the first reason wins; before the kernel starts, the step ends
    as soon as it does.
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._wake: threading.Event | None = None
        self.reason: StepError | None = None
        self.session: KernelSession | None = None

    def cancel(self, code: str = FailureCode.CANCELED,
               message: str = "the step was canceled") -> None:
        with self._lock:
            if self.reason is None:
                self.reason = StepError(code, message)
            wake = self._wake
        self._stop.set()
        if wake is not None:
            wake.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    @property
    def kernel_pid(self) -> int | None:
        return self.session.kernel_pid if self.session else None

    def _attach(self, session: KernelSession, wake: threading.Event) -> None:
        """The runner's side: the kernel to stop and the watcher to wake on a cancel."""
        with self._lock:
            self.session, self._wake = session, wake
        if self.cancelled:
            wake.set()


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def classify(exc: BaseException) -> StepError:
    """Map what papermill/nbclient raised to a failure code of the contract."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        return StepError(
            code=code_for(exc.ename),
            message=strip_ansi(str(exc.evalue)),
            traceback=strip_ansi("\n".join(exc.traceback)),
            cell_index=exc.cell_index,
        )
    if isinstance(exc, CellTimeoutError | TimeoutError):
        return StepError(FailureCode.TIMEOUT, str(exc) or "step timed out")
    if isinstance(exc, DeadKernelError):
        return StepError(FailureCode.KERNEL_DIED, str(exc) or "the kernel died")
    return StepError(type(exc).__name__, str(exc))


def describe_exit(status: int | None) -> str:
    if status is None:
        return "the kernel died"
    if status < 0:
        import signal

        name = signal.Signals(-status).name
        hint = " — often the out-of-memory killer" if name == "SIGKILL" else ""
        return f"the kernel was killed by {name}{hint}"
    return f"the kernel exited with status {status}"


def find_output_error(nb: NotebookNode) -> StepError | None:
    """A Python traceback a cell printed to stderr without raising (papermill misses these).

    The rule: a `stderr` stream of a code cell holding "Traceback (most recent call last)",
    as `traceback.print_exc()` or `logging.exception` write it. Warnings and progress bars
    on stderr do not count. (An `error` output a cell shows without raising, e.g. through
    `get_ipython().showtraceback()`, papermill does report; the runner tells it apart from
    a raised one by the cell's execute reply, see `_CellReporter`.)
    """
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        stderr = "".join(out.get("text", "") for out in cell.get("outputs", [])
                         if out.get("output_type") == "stream" and out.get("name") == "stderr")
        if TRACEBACK_HEADER in stderr:
            tb = strip_ansi(stderr[stderr.index(TRACEBACK_HEADER):])
            last = [line for line in tb.splitlines() if line.strip()][-1].strip()
            return StepError(FailureCode.OUTPUT_ERROR,
                             f"cell {index} printed a traceback without raising it: {last}",
                             tb, cell_index=index, cell_id=cell.get("id"))
    return None


def ensure_cell_ids(nb: NotebookNode) -> NotebookNode:
    """nbformat 4.5 cell ids on every cell: `#cell-id=` links and events name cells by them."""
    from nbformat.corpus.words import generate_corpus_id

    if (nb.nbformat, nb.nbformat_minor) < (4, 5):
        nb.nbformat, nb.nbformat_minor = 4, 5
    seen: set[str] = set()
    for cell in nb.cells:
        if not cell.get("id") or cell["id"] in seen:
            cell["id"] = generate_corpus_id()
        seen.add(cell["id"])
    return nb


def cell_label(cell: NotebookNode) -> str | None:
    match = _DESCRIPTION.search(cell.get("source", ""))
    return match.group(1) if match else None


class _CellReporter:
    """nbclient hooks: per-cell events, stage progress by cells done (only growing), and
    which cell raised (from its execute reply) as opposed to only showing an error."""

    def __init__(self, nb: NotebookNode, handle: StepHandle, on_event: EventCallback | None,
                 session: KernelSession, injected: bool) -> None:
        self.handle = handle
        self.on_event = on_event
        self.session = session
        # papermill adds a cell for the injected parameters, when there are any.
        self.total = injected + sum(1 for c in nb.cells
                                    if c.cell_type == "code" and c.source.strip())
        self.done = 0
        self.progress = 0.0
        self.current: tuple[int, str | None, str | None, float] | None = None
        self.last_started: int | None = None
        self.cell_ids: dict[int, str | None] = {}
        self.raised: StepError | None = None

    def _emit(self, event_type: str, data: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event_type, data)

    def on_cell_start(self, cell: NotebookNode, cell_index: int) -> None:
        if self.handle.cancelled:
            raise StepStopped(self.handle.reason.message if self.handle.reason else "stopped")
        self.session.dirty = True
        self.cell_ids[cell_index] = cell.get("id")
        if cell.cell_type != "code" or not cell.source.strip():
            return
        label = cell_label(cell)
        self.current = (cell_index, cell.get("id"), label, time.monotonic())
        self.last_started = cell_index
        log.info("cell %d%s started", cell_index, f" ({label})" if label else "")
        self._emit("ai.run.cell_started",
                   {"cell_index": cell_index, "cell_id": cell.get("id"), "label": label})

    def on_cell_executed(self, cell: NotebookNode, cell_index: int,
                         execute_reply: dict[str, Any]) -> None:
        self.session.dirty = True
        content = (execute_reply or {}).get("content", {})
        if content.get("status") == "error":
            ename = content.get("ename", "Error")
            self.raised = StepError(
                code_for(ename), strip_ansi(str(content.get("evalue", ""))),
                strip_ansi("\n".join(content.get("traceback", []))),
                cell_index=cell_index, cell_id=cell.get("id"))
            stop = self.handle.reason  # the interrupt we sent shows as KeyboardInterrupt
            self.cell_failed(*((stop.code, stop.message) if stop else
                               (self.raised.code, self.raised.message)))
            return
        if not self._end_cell("ai.run.cell_completed",
                              execution_count=cell.get("execution_count")):
            return
        self.done += 1
        progress = round(min(1.0, self.done / self.total), 4)
        if progress > self.progress:
            self.progress = progress
            self._emit("ai.run.stage_progress", {"progress": progress})

    def cell_failed(self, code: str, message: str) -> None:
        """The running cell ended in an error (raised, timed out, kernel died, stopped)."""
        self._end_cell("ai.run.cell_failed", code=code, message=message[:2000])

    def _end_cell(self, event_type: str, **extra: Any) -> bool:
        """Report the end of the running cell, if a cell is running."""
        if self.current is None:
            return False
        index, cell_id, label, started = self.current
        self.current = None
        self._emit(event_type, {"cell_index": index, "cell_id": cell_id, "label": label,
                                "duration_s": round(time.monotonic() - started, 3), **extra})
        return True

    def explain(self, exc: BaseException, limits: Limits) -> StepError:
        """The StepError for an execution that raised, knowing why the runner stopped it."""
        from nbclient.exceptions import DeadKernelError
        from papermill.exceptions import PapermillExecutionError

        session = self.session
        if self.handle.reason is not None:
            error = self.handle.reason
        elif not session.kernel_started.is_set() or "didn't respond" in str(exc):
            if "didn't respond" in str(exc) or isinstance(exc, TimeoutError):
                error = StepError(
                    FailureCode.TIMEOUT, f"the kernel did not start within {limits.start_s}s")
            else:
                error = StepError(FailureCode.KERNEL_DIED, f"the kernel failed to start: {exc}")
        elif isinstance(exc, DeadKernelError):
            time.sleep(0.1)  # let the process be reaped so its exit status is known
            error = StepError(FailureCode.KERNEL_DIED, describe_exit(session.exit_status()))
        elif isinstance(exc, PapermillExecutionError) and self.raised is not None:
            error = self.raised
        elif isinstance(exc, PapermillExecutionError):
            # papermill found an error output, but no cell raised: shown, never raised.
            error = StepError(FailureCode.OUTPUT_ERROR,
                              f"cell {exc.cell_index} shows {exc.ename}: "
                              f"{strip_ansi(str(exc.evalue))} without raising it",
                              strip_ansi("\n".join(exc.traceback)), cell_index=exc.cell_index)
        else:
            error = classify(exc)
            if error.code == FailureCode.TIMEOUT and limits.cell_timeout_s:
                error = replace(error,
                                message=f"a cell ran longer than {limits.cell_s}s")
        if error.cell_index is None and self.last_started is not None:
            error = replace(error, cell_index=self.last_started)
        if error.cell_index is not None and error.cell_id is None:
            error = replace(error, cell_id=self.cell_ids.get(error.cell_index))
        return error


def _watch(handle: StepHandle, session: KernelSession, limits: Limits, started: float,
           wake: threading.Event) -> None:
    """Stop the step on cancel or when the step timeout passes: interrupt, grace, kill.
    `wake` is set by a cancel and by the end of the execution."""
    timeout = started + limits.step_timeout_s - time.monotonic() if limits.step_timeout_s \
        else None
    if not wake.wait(timeout):
        handle.cancel(FailureCode.TIMEOUT, f"the step took longer than {limits.step_timeout_s:g}s")
    if session.finished.is_set() or not handle.cancelled:
        return
    while not session.finished.is_set() and not session.kernel_started.wait(0.2):
        pass
    if session.finished.is_set():
        return
    log.info("stopping the kernel: %s", handle.reason.message if handle.reason else "")
    session.interrupt()
    if not session.finished.wait(limits.cancel_grace_s):
        log.warning("the kernel did not stop after an interrupt; killing it")
        session.kill()


def _publish_live(session: KernelSession, publish: Publish, every_s: float) -> None:
    """Offer a snapshot of the executing notebook every `every_s` seconds when it changed."""
    while not session.finished.wait(every_s):
        if not session.dirty:
            continue
        data = session.snapshot()
        if data is None:
            continue
        try:
            publish(data)
        except Exception as exc:  # the final upload decides; a live one may fail
            log.warning("live notebook upload failed: %s", exc)


def execute_step(
    notebook: Path,
    output: Path,
    parameters: Mapping[str, Any],
    *,
    cwd: Path,
    offered: Mapping[str, Any] | None = None,
    secrets: Iterable[str] = (),
    requires: Iterable[tuple[str, str]] = (),
    limits: Limits | None = None,
    handle: StepHandle | None = None,
    on_event: EventCallback | None = None,
    publish: Publish | None = None,
    publish_every_s: float = 60,
    kernel_env: Mapping[str, str] | None = None,
    scrubber: Scrubber | None = None,
) -> StepResult:
    """Run `notebook` with `parameters` (and the declared ones of `offered`) injected,
    writing the executed copy to `output`; refused before a kernel starts when the
    parameters do not validate or an input in `requires` (step, output) is missing.

    `on_event(type, data)` receives `ai.run.cell_*` and `ai.run.stage_progress` data
    without `run_id`/`stage` (the caller adds them); `publish(bytes)` receives a snapshot of
    the executing notebook at most every `publish_every_s` seconds when it changed.
    """
    import papermill

    limits = limits or Limits()
    handle = handle or StepHandle()
    started = time.monotonic()

    def done(error: StepError | None, pid: int | None = None) -> StepResult:
        return StepResult(output, time.monotonic() - started, error, pid)

    nb = ensure_cell_ids(nbformat.read(notebook, as_version=4))
    try:
        values = params.validate(nb, parameters, offered=offered, secrets=secrets,
                                 requires=requires)
    except params.ParameterError as exc:
        return done(StepError(params.ParameterError.code, str(exc)))
    if handle.cancelled:
        return done(handle.reason)

    output.parent.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    session = KernelSession(kernel_env, scrubber)
    wake = threading.Event()
    handle._attach(session, wake)
    reporter = _CellReporter(nb, handle, on_event, session, injected=bool(values))
    threads = [threading.Thread(target=_watch, args=(handle, session, limits, started, wake),
                                name="aisci-step-watch", daemon=True)]
    if publish is not None:
        threads.append(threading.Thread(target=_publish_live,
                                        args=(session, publish, publish_every_s),
                                        name="aisci-live-notebook", daemon=True))
    for t in threads:
        t.start()
    error: StepError | None = None
    try:
        papermill.execute_notebook(
            nb, str(output), parameters=values, engine_name=ENGINE_NAME,
            kernel_name="python3", cwd=str(cwd), progress_bar=False, log_output=False,
            start_timeout=limits.start_s, execution_timeout=limits.cell_s,
            session=session, on_cell_start=reporter.on_cell_start,
            on_cell_executed=reporter.on_cell_executed,
        )
    except Exception as exc:
        error = reporter.explain(exc, limits)
        reporter.cell_failed(error.code, error.message)
    finally:
        session.finished.set()
        wake.set()
        session.kill()  # normally gone already; never leave a kernel behind
        for t in threads:
            t.join(timeout=30)
    if error is None and output.exists():
        error = find_output_error(nbformat.read(output, as_version=4))
    return done(error, session.kernel_pid)
