"""The LLM layer's errors, under one root. A step that raises one ends with `ai.run.failed`
whose code is the class's `code` (`aisci_nb.failures.code_for` maps the class names), so
the user reads `LLM_AUTH` rather than a provider SDK's exception name."""

from __future__ import annotations


class LLMError(Exception):
    """Root of every error the LLM layer raises."""

    code = "LLM_ERROR"


class LLMAuthError(LLMError):
    """The provider refused the key (401/403): retrying cannot help."""

    code = "LLM_AUTH"


class LLMBadRequest(LLMError):
    """The provider refused the request itself (unknown model, invalid input, 400/404/422)."""

    code = "LLM_BAD_REQUEST"


class LLMUnavailable(LLMError):
    """The provider kept failing (429, 5xx, connection errors) after every attempt."""

    code = "LLM_UNAVAILABLE"


class LLMTimeout(LLMError):
    """The call did not finish within its time limit (`LLM_TIMEOUT_S`), retries included."""

    code = "LLM_TIMEOUT"


class LLMConfigError(LLMError):
    """A model setting names no usable provider (e.g. `local:` without `LLM_BASE_URL`)."""

    code = "LLM_CONFIG"


class BudgetExceeded(LLMError):
    """The run or the step spent its LLM budget (`LLM_BUDGET_USD`, `LLM_STEP_BUDGET_USD`)."""

    code = "BUDGET_EXCEEDED"


class Transient(Exception):
    """Internal: one attempt failed in a way another attempt may not (429, 5xx, timeout).
    `retry_after_s` is the server's `Retry-After`, when it sent one."""

    def __init__(self, message: str, retry_after_s: float | None = None,
                 timeout: bool = False) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.timeout = timeout


class ScriptMissing(LLMError, LookupError):
    """No recorded response of the offline scripted provider covers a call."""

    code = "LLM_SCRIPT_MISSING"


# exception class name -> failure code, for `aisci_nb.failures.code_for` (kernels raise these)
FAILURE_CODES: dict[str, str] = {
    cls.__name__: cls.code
    for cls in (LLMError, LLMAuthError, LLMBadRequest, LLMUnavailable, LLMTimeout,
                LLMConfigError, BudgetExceeded, ScriptMissing)
}
