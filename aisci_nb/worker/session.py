"""One claimed document in a worker: its events, its lease keeper, and why it must stop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..contract.failures import FailureCode
from ..events.emitter import RunEmitter
from ..queue import claims
from ..queue.lease import LeaseKeeper


@dataclass
class RunSession:
    """One claimed document in this worker: its events, its lease keeper, and why it must
    stop (taken over, canceled, released at shutdown), if it must."""

    claim: claims.Claim
    events: RunEmitter | None  # None for an ideation request (its events carry no run)
    lease: LeaseKeeper | None = None
    releasing: bool = False

    @property
    def lost(self) -> bool:
        return self.lease is not None and self.lease.lost.is_set()

    @property
    def canceled(self) -> dict | None:
        return self.lease.cancel if self.lease else None

    @property
    def interrupted(self) -> bool:
        return self.lost or self.canceled is not None or self.releasing

    def stop_reason(self) -> tuple[str, str] | None:
        """(code, message) for the running step's `StepHandle.cancel`, if it must stop."""
        if self.lost:
            return FailureCode.LEASE_LOST, "another worker took the run over"
        if self.canceled is not None:
            return FailureCode.CANCELED, f"canceled by {self.canceled.get('by') or 'someone'}"
        if self.releasing:
            return (FailureCode.RELEASED,
                    "the worker is shutting down; another one resumes the run")
        return None

    def emit(self, event_type: str, **data: Any) -> None:
        """Emit for the run, unless the lease was taken over: then this worker says nothing."""
        if self.events is not None and not self.lost:
            self.events.emit(event_type, **data)
