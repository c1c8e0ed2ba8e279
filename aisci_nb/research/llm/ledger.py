"""The run's LLM spending, kept across steps and resumes, and the budget it must stay under.

A run's steps run in separate kernels, possibly on different pods after a resume, and a
kernel has no database. So the spending lives in a small JSON file, the *ledger*, that the
worker places in the run's directory on the pod and names to the kernel in the environment
(`AISCI_LLM_LEDGER`). On every claim the worker seeds it from what the control plane has
projected for the run (`runs.llmUsage`, derived from the `ai.llm.usage` events), keeping
the larger figure when the pod's own file already knows more (its newest calls may not be
projected yet). The kernel adds every call's cost to it before the next call starts.
Without a ledger (JupyterLab, nbval) the spending is counted in memory for the process.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BudgetExceeded

LEDGER_ENV = "AISCI_LLM_LEDGER"


@dataclass
class Ledger:
    path: Path | None = None
    run_usd: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _fd: int | None = field(default=None, repr=False)
    _written: int = field(default=0, repr=False)

    @classmethod
    def open(cls, path: Path | str | None) -> Ledger:
        ledger = cls(Path(path) if path else None)
        if ledger.path is not None and ledger.path.exists():
            try:
                data = json.loads(ledger.path.read_text() or "{}")
            except json.JSONDecodeError:
                data = {}  # the worker's seed from the read model sets the floor again
            ledger.run_usd = float(data.get("run_usd", 0.0))
            ledger.steps = {str(k): float(v) for k, v in (data.get("steps") or {}).items()}
        return ledger

    @classmethod
    def from_env(cls) -> Ledger:
        return cls.open(os.environ.get(LEDGER_ENV) or None)

    def step_usd(self, step: str) -> float:
        return self.steps.get(step, 0.0)

    def add(self, step: str, usd: float) -> None:
        with self._lock:
            self.run_usd += usd
            self.steps[step] = self.step_usd(step) + usd
            self._save()

    def _save(self) -> None:
        """Overwrite the file in place with one small write, padded over any longer earlier
        text (JSON allows trailing blanks): a rename per call would cost milliseconds on
        some filesystems, and the next reader is the next step's kernel, after this one."""
        if self.path is None:
            return
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            self._written = os.fstat(self._fd).st_size
        data = json.dumps({"run_usd": self.run_usd, "steps": self.steps}).encode()
        os.pwrite(self._fd, data.ljust(self._written), 0)
        self._written = max(self._written, len(data))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def seed(path: Path, run_usd: float, steps: dict[str, float]) -> Ledger:
    """The worker's side, on claim: the run's known spending, never less than the file's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ledger = Ledger.open(path)
    with ledger._lock:
        ledger.run_usd = max(ledger.run_usd, float(run_usd or 0.0))
        for step, usd in steps.items():
            ledger.steps[step] = max(ledger.step_usd(step), float(usd or 0.0))
        ledger._save()
        ledger.close()
    return ledger


@dataclass(frozen=True)
class Budget:
    run_usd: float | None = None
    step_usd: float | None = None

    def check(self, ledger: Ledger, step: str) -> None:
        """Raise `BudgetExceeded` once the run or the step has spent its budget."""
        if self.run_usd is not None and ledger.run_usd >= self.run_usd:
            raise BudgetExceeded(
                f"the run spent ${ledger.run_usd:.4f} on LLM calls, its budget is "
                f"${self.run_usd:.4f} (LLM_BUDGET_USD)")
        spent = ledger.step_usd(step)
        if self.step_usd is not None and spent >= self.step_usd:
            raise BudgetExceeded(
                f"step {step} spent ${spent:.4f} on LLM calls, its budget is "
                f"${self.step_usd:.4f} (LLM_STEP_BUDGET_USD)")
