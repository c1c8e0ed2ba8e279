"""Failure codes, step statuses and outcomes are enums whose values are the stored strings."""

from __future__ import annotations

import orjson
import pytest

from aisci_nb.contract.failures import RETRYABLE_CODES, Failure, FailureCode, code_for
from aisci_nb.contract.lifecycle import CancelResult, Outcome, RunStatus, StepStatus


@pytest.mark.parametrize(("name", "code"), [
    ("MemoryError", FailureCode.OOM), ("OutOfMemoryError", FailureCode.OOM),
    ("CellTimeoutError", FailureCode.TIMEOUT), ("StorageError", FailureCode.STORAGE_ERROR),
    ("ZeroDivisionError", "ZeroDivisionError")])
def test_code_for(name: str, code: str) -> None:
    assert code_for(name) == code


def test_codes_keep_their_wire_values() -> None:
    assert FailureCode.OOM == "OOMError" and FailureCode.LEASE_LOST == "LEASE_LOST"
    assert orjson.dumps({"code": FailureCode.TIMEOUT}) == b'{"code":"TIMEOUT"}'
    assert {"TIMEOUT", "LLM_TIMEOUT", "LLM_UNAVAILABLE"} == RETRYABLE_CODES
    assert Failure(FailureCode.TIMEOUT, "slow").retryable
    assert not Failure("ZeroDivisionError", "boom").retryable


def test_outcome_covers_every_status_a_worker_can_leave() -> None:
    for status in ("COMPLETED", "AWAITING_HUMAN", "FAILED", "CANCELED", "QUEUED"):
        assert Outcome(status) == RunStatus(status)
    assert Outcome.LOST == "LOST" and "LOST" not in {s.value for s in RunStatus}


def test_step_status_of_a_stopped_step() -> None:
    assert StepStatus(FailureCode.CANCELED) is StepStatus.CANCELED
    assert StepStatus(FailureCode.RELEASED) is StepStatus.RELEASED
    assert {c.value for c in CancelResult} == {"CANCELED", "CANCEL_REQUESTED", "FINAL",
                                              "NOT_FOUND"}
