"""Every error the package raises, under one root, so callers can catch `AisciError`.

    AisciError
    ├── ParameterError      a notebook parameter is unknown, missing, ill-typed or a secret
    ├── MissingInput        `ctx.input(step, name)` names an output no earlier step produced
    └── InvalidMetric       `ctx.metric` got a value the event contract cannot carry

Each also derives from the builtin its callers used to catch (ValueError, LookupError...),
so moving them here changed no `except` clause.
"""

from __future__ import annotations


class AisciError(Exception):
    """The root of every error aisci raises on purpose."""


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
