"""Executing one step notebook with papermill, and classifying how it ended.

The executed notebook is always written, also when a cell raised: papermill leaves its
error banner and the failing cell's output in it, which is what a person debugs.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .failures import Failure, code_for

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class StepError(Failure):
    cell_index: int | None = None


@dataclass(frozen=True)
class StepResult:
    output_path: Path
    duration_s: float
    error: StepError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


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
        return StepError("TIMEOUT", str(exc) or "step timed out")
    if isinstance(exc, DeadKernelError):
        return StepError("KERNEL_DIED", str(exc) or "the kernel died")
    return StepError(type(exc).__name__, str(exc))


class StepControl:
    """Stops a running step from another thread (cancel, lease lost, shutdown).

    `stop()` sends SIGINT to the kernel's process group (papermill then writes the partial
    notebook with a KeyboardInterrupt banner) and SIGKILL after `grace_s` if the step is
    still running. jupyter_client starts each kernel in its own session, so whatever the
    kernel started goes too. Once stopped, later steps do not start.
    """

    def __init__(self) -> None:
        self.km: Any = None  # the kernel manager of the step now running
        self.reason: str | None = None
        self._running = threading.Event()
        self._deadline = 0.0
        self._lock = threading.Lock()
        self._enforcer: threading.Thread | None = None

    def stop(self, reason: str, grace_s: float = 5.0) -> None:
        """Stop the step; a second call may only shorten the grace (the first reason stays)."""
        with self._lock:
            deadline = time.monotonic() + grace_s
            self._deadline = min(self._deadline, deadline) if self.reason else deadline
            self.reason = self.reason or reason
            if self._enforcer is None or not self._enforcer.is_alive():
                self._enforcer = threading.Thread(target=self._enforce, daemon=True,
                                                  name="aisci-step-stop")
                self._enforcer.start()

    def kernel_manager_class(self) -> type:
        """papermill's kernel manager, made to tell this control which kernel to stop."""
        from jupyter_client.manager import AsyncKernelManager

        control = self

        class TrackedKernelManager(AsyncKernelManager):
            def __init__(self, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                control.km = self

        return TrackedKernelManager

    def _kernel_pgid(self) -> int | None:
        provisioner = getattr(self.km, "provisioner", None)
        pid = getattr(provisioner, "pid", None)
        try:
            return os.getpgid(pid) if pid else None
        except ProcessLookupError:
            return None

    def _enforce(self) -> None:
        interrupted = False
        while self._running.is_set():
            pgid = self._kernel_pgid()
            late = time.monotonic() >= self._deadline
            if pgid and (late or not interrupted):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL if late else signal.SIGINT)
                interrupted = True
            time.sleep(0.1)


def execute_step(
    notebook: Path,
    output: Path,
    parameters: dict[str, Any],
    *,
    cwd: Path,
    cell_timeout_s: float | None = None,
    start_timeout_s: float = 60,
    control: StepControl | None = None,
) -> StepResult:
    """Run `notebook` with `parameters` injected, writing the executed copy to `output`.

    papermill runs in a thread of its own: nbclient takes over SIGINT/SIGTERM when it runs
    in the main thread, and the worker keeps those for its own shutdown. A step stopped
    through `control` ends with the stop's reason as its error code.
    """
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    control = control or StepControl()
    raised: list[BaseException] = []

    def run() -> None:
        try:
            papermill.execute_notebook(
                str(notebook), str(output), parameters=parameters, kernel_name="python3",
                cwd=str(cwd), progress_bar=False, log_output=False,
                start_timeout=start_timeout_s, execution_timeout=cell_timeout_s,
                kernel_manager_class=control.kernel_manager_class(),
            )
        except BaseException as exc:
            raised.append(exc)

    control._running.set()
    skipped = control.reason is not None
    try:
        if not skipped:
            thread = threading.Thread(target=run, name="aisci-step", daemon=True)
            thread.start()
            while thread.is_alive():
                thread.join(0.2)  # short joins keep the main thread's signal handlers live
    finally:
        control._running.clear()
        control.km = None
    error = classify(raised[0]) if raised else None
    if skipped or (error is not None and control.reason is not None):
        error = StepError(control.reason or "STOPPED", f"the step was stopped: {control.reason}",
                          error.traceback if error else None)
    return StepResult(output, time.monotonic() - started, error)
