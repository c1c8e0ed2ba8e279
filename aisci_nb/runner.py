"""Executing one step notebook with papermill, and classifying how it ended.

The executed notebook is always written, also when a cell raised: papermill leaves its
error banner and the failing cell's output in it, which is what a person debugs.
"""

from __future__ import annotations

import re
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


def execute_step(
    notebook: Path,
    output: Path,
    parameters: dict[str, Any],
    *,
    cwd: Path,
    cell_timeout_s: float | None = None,
    start_timeout_s: float = 60,
) -> StepResult:
    """Run `notebook` with `parameters` injected, writing the executed copy to `output`."""
    import time

    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    error: StepError | None = None
    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(cwd),
            progress_bar=False,
            log_output=False,
            start_timeout=start_timeout_s,
            execution_timeout=cell_timeout_s,
        )
    except Exception as exc:
        error = classify(exc)
    return StepResult(output, time.monotonic() - started, error)
