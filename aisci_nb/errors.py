"""Every error the package raises on purpose, under one root: catch `AisciError`.

    AisciError
    ├── ParameterError    a notebook parameter is unknown, missing, ill-typed or a secret
    ├── MissingInput      `ctx.input(step, name)` names an output no earlier step produced
    ├── InvalidMetric     `ctx.metric` got a value the event contract cannot carry
    ├── InvalidIdea       an idea JSON does not match the schema
    ├── InvalidEvent      an event cannot be accepted (the message goes back to the sender)
    ├── UnknownEventType  an event type outside the catalogue
    ├── SpoolFull         the bound on unacknowledged events was hit
    ├── StorageError      an upload or download failed for good (code STORAGE_ERROR)
    ├── StepStopped       a stop was requested between cells (control flow of the runtime)
    ├── IdeationError     an ideation request cannot be served
    ├── ServiceError      a local service could not be started or found
    ├── RunStateRefused   a rerun or a verdict on a run in the wrong state (or unknown)
    ├── DebugError        `aisci debug` cannot prepare the workspace
    └── LLMError          the LLM layer (research/llm/errors.py): LLMAuthError, LLMBadRequest,
                          LLMUnavailable, LLMTimeout, LLMConfigError, BudgetExceeded,
                          ScriptMissing — each with its failure code

Each also derives from the builtin its callers caught before there was a root (ValueError,
RuntimeError, LookupError), so no `except` clause changed meaning. The class names are part
of the failure taxonomy (`contract.failures` maps `StorageError` raised in a kernel by name).
"""

from __future__ import annotations


class AisciError(Exception):
    """The root of every error aisci raises on purpose."""


class ParameterError(AisciError, ValueError):
    """A parameter is unknown, missing, ill-typed or a secret; `name` says which."""

    code = "INVALID_PARAMETER"  # contract.failures.FailureCode.INVALID_PARAMETER

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"parameter {name!r}: {problem}")
        self.name = name


class MissingInput(AisciError, LookupError):
    """A step asked for an input (an earlier step's output) that this run does not have."""

    def __init__(self, step: str, name: str, available: dict[str, dict[str, str]]) -> None:
        if not available:
            where = ("this run has no inputs at all (outside the worker: pass "
                     "aisci={'inputs': {step: {name: path}}}, or use `aisci debug RUN_ID`)")
        else:
            listed = ", ".join(f"{s}.{n}" for s, outs in available.items() for n in outs)
            where = f"this run's inputs are: {listed}"
        super().__init__(f"no input {step}.{name}: {where}")
        self.step, self.name = step, name


class InvalidMetric(AisciError, ValueError):
    """A metric that JSON cannot carry (NaN, ±inf) or that is not a number at all."""


class InvalidIdea(AisciError, ValueError):
    """An idea JSON does not match the schema; the message names the field."""


class InvalidEvent(AisciError, ValueError):
    """The event cannot be accepted; the message is the reason given back to the sender."""


class UnknownEventType(AisciError, ValueError):
    """An event type that the catalogue does not define."""


class SpoolFull(AisciError, RuntimeError):
    """The bound on unacknowledged events was hit; the message says what to look at."""


class StorageError(AisciError, RuntimeError):
    """An upload or download failed for good (after retries); the code is STORAGE_ERROR."""


class StepStopped(AisciError):
    """Raised from the cell hook when a stop was requested between cells."""


class IdeationError(AisciError, ValueError):
    """The request cannot be served; the message says why."""


class ServiceError(AisciError, RuntimeError):
    """A service could not be started or found; the message is one line for the user."""


class RunStateRefused(AisciError, ValueError):
    """A person's action on a run in the wrong state (unknown run: `status` None)."""

    def __init__(self, message: str, status: str | None) -> None:
        super().__init__(message)
        self.status = status


class DebugError(AisciError, RuntimeError):
    """`aisci debug` cannot prepare the workspace; the message says what is missing."""
