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
    NOT_FOUND = "NOT_FOUND"  # the claimed document's hypothesis is gone
    INVALID_RESULT = "INVALID_RESULT"  # ideation's notebook left no valid ideas.json
    # The LLM layer's (research/llm/errors.py)
    LLM_ERROR = "LLM_ERROR"
    LLM_AUTH = "LLM_AUTH"  # a bad key: fails fast
    LLM_BAD_REQUEST = "LLM_BAD_REQUEST"  # an unknown model or a refused request
    LLM_UNAVAILABLE = "LLM_UNAVAILABLE"  # the provider stayed down through the retries
    LLM_TIMEOUT = "LLM_TIMEOUT"
    LLM_CONFIG = "LLM_CONFIG"
    LLM_SCRIPT_MISSING = "LLM_SCRIPT_MISSING"  # the offline script covers no such call
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"  # LLM_BUDGET_USD or LLM_STEP_BUDGET_USD crossed
    ALL_NODES_BUGGY = "ALL_NODES_BUGGY"  # every node of a tree-search stage was buggy
    MAX_ITERATIONS = "MAX_ITERATIONS"  # a tree-search stage hit its limit before its goal


OOM_NAMES = frozenset({"MemoryError", "OutOfMemoryError", "OOMError"})
TIMEOUT_NAMES = frozenset({"TimeoutError", "CellTimeoutError", "TIMEOUT"})
STORAGE_NAMES = frozenset({"StorageError"})  # the store's, also when raised in a kernel
# Errors raised in kernels, by class name: the LLM layer's (research/llm/errors.py) and the
# tree search's.
NAMED_CODES = {
    "LLMError": FailureCode.LLM_ERROR, "LLMAuthError": FailureCode.LLM_AUTH,
    "LLMBadRequest": FailureCode.LLM_BAD_REQUEST, "LLMUnavailable": FailureCode.LLM_UNAVAILABLE,
    "LLMTimeout": FailureCode.LLM_TIMEOUT, "LLMConfigError": FailureCode.LLM_CONFIG,
    "BudgetExceeded": FailureCode.BUDGET_EXCEEDED,
    "ScriptMissing": FailureCode.LLM_SCRIPT_MISSING,
    # The tree search's stage failures (aisci_nb.research.treesearch.search)
    "AllNodesBuggy": FailureCode.ALL_NODES_BUGGY,
    "MaxIterationsReached": FailureCode.MAX_ITERATIONS,
}
# A provider outage may be over by the next attempt; a bad key or a spent budget is not.
RETRYABLE_CODES = frozenset({FailureCode.TIMEOUT, FailureCode.LLM_UNAVAILABLE,
                             FailureCode.LLM_TIMEOUT})
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
    the LLM layer's errors → their codes (LLM_AUTH, BUDGET_EXCEEDED, ...); the tree search's
    AllNodesBuggy / MaxIterationsReached → ALL_NODES_BUGGY / MAX_ITERATIONS; else the name."""
    if exception_name in OOM_NAMES:
        return FailureCode.OOM
    if exception_name in TIMEOUT_NAMES:
        return FailureCode.TIMEOUT
    if exception_name in STORAGE_NAMES:
        return FailureCode.STORAGE_ERROR
    return NAMED_CODES.get(exception_name, exception_name)


def from_exception(exc: BaseException, stage: str | None = None) -> Failure:
    text = "".join(tb.format_exception(exc))
    return Failure(code_for(type(exc).__name__), str(exc) or type(exc).__name__, text, stage)
