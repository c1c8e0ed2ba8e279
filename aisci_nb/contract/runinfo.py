"""The one parameter the worker injects into a step notebook: `aisci`, the run info.

A step notebook declares `aisci: dict[str, Any] | None = None` and passes it to
`aisci_nb.init(aisci, stage=stage)`; everything the kernel needs to report (where events
go, the shared sequence file, the spool, the trace, the lease epoch) and to work (the idea,
the earlier steps' outputs) travels in it, so no notebook can forget a piece of plumbing.
Credentials never do: the kernel reads them from its environment (`RUN_TOKEN_ENV`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PARAMETER = "aisci"
API_KEY_ENV = "AISCI_API_KEY"  # outside a worker only: a worker gives kernels a run token
RUN_TOKEN_ENV = "AISCI_RUN_TOKEN"  # a run-scoped credential (contract/runtoken.py)
AUTH_MODE_ENV = "AISCI_INGEST_AUTH"  # "bearer" (default) or "hmac"


class RunInfo(BaseModel):
    """What the worker tells a kernel about the run; all optional, so `{}` is a local run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str | None = None
    idea: dict[str, Any] | None = None
    inputs: dict[str, dict[str, str]] | None = None  # step -> output name -> local path
    events_url: str | None = None  # None: events go to the local debug sink
    event_source: str | None = None
    seq_path: str | None = None  # the per-run sequence file shared with the worker
    spool_dir: str | None = None
    spool_max_bytes: int | None = Field(None, gt=0)  # the worker's SPOOL_MAX_BYTES
    traceparent: str | None = None
    lease_epoch: int | None = None

    @classmethod
    def of(cls, value: RunInfo | dict[str, Any] | None) -> RunInfo:
        return value if isinstance(value, RunInfo) else cls.model_validate(value or {})
