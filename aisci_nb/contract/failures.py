"""The failure taxonomy: one code per kind of failure, shared by the worker and the runner.

Every failure reaches the user as one `ai.run.failed` with `code`, `message`, `traceback`
and `retryable`; this module decides the code and whether a retry can help.
"""

from __future__ import annotations

import traceback as tb
from dataclasses import dataclass
from enum import StrEnum


class FailureCode(StrEnum):
    """The codes aisci itself assigns; any other code is the name of the exception raised."""

    TIMEOUT = "TIMEOUT"  # a cell or the step took too long, or the kernel did not start
    OOM = "OOMError"  # CUDA out of memory or MemoryError
    STORAGE_ERROR = "STORAGE_ERROR"  # an artifact upload or download failed for good
    KERNEL_DIED = "KERNEL_DIED"
    OUTPUT_ERROR = "OUTPUT_ERROR"  # the executed notebook could not be written
    INVALID_PARAMETER = "INVALID_PARAMETER"  # refused before a kernel started
    LEASE_LOST = "LEASE_LOST"  # another worker took the run over
    CANCELED = "CANCELED"
    RELEASED = "RELEASED"  # the worker shut down; another one resumes the run


OOM_NAMES = frozenset({"MemoryError", "OutOfMemoryError", "OOMError"})
TIMEOUT_NAMES = frozenset({"TimeoutError", "CellTimeoutError", "TIMEOUT"})
STORAGE_NAMES = frozenset({"StorageError"})  # the store's, also when raised in a kernel
RETRYABLE_CODES = frozenset({FailureCode.TIMEOUT})
MAX_TRACEBACK = 64 * 1024  # an event must stay small; the notebook keeps the whole story


@dataclass(frozen=True)
class Failure:
    code: str
    message: str
    traceback: str | None = None
    stage: str | None = None

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES

    def event_data(self, run_id: str) -> dict:
        data = {"run_id": run_id, "code": self.code, "message": self.message[:4096],
                "retryable": self.retryable}
        if self.stage:
            data["stage"] = self.stage
        if self.traceback:
            data["traceback"] = self.traceback[-MAX_TRACEBACK:]
        return data


def code_for(exception_name: str) -> str:
    """CUDA OOM and MemoryError → OOMError; timeouts → TIMEOUT; storage → STORAGE_ERROR;
    else the exception's name."""
    if exception_name in OOM_NAMES:
        return FailureCode.OOM
    if exception_name in TIMEOUT_NAMES:
        return FailureCode.TIMEOUT
    if exception_name in STORAGE_NAMES:
        return FailureCode.STORAGE_ERROR
    return exception_name


def from_exception(exc: BaseException, stage: str | None = None) -> Failure:
    text = "".join(tb.format_exception(exc))
    return Failure(code_for(type(exc).__name__), str(exc) or type(exc).__name__, text, stage)
