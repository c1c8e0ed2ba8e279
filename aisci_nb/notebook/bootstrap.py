"""`aisci_nb.init(aisci, stage=...)`: the run info in, one `RunContext` per kernel out.

Re-running the init cell (JupyterLab does, often) returns the same context when nothing
changed, and otherwise closes the previous one before building the next, so a kernel never
holds more than one emitter thread; one exit hook, registered once, closes whichever context
is current when the kernel ends.
"""

from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path
from typing import Any

from ..contract.runinfo import API_KEY_ENV, AUTH_MODE_ENV, RUN_TOKEN_ENV, RunInfo
from ..contract.scrub import from_env as scrub_from_env
from ..events.emitter import DebugSink, Emitter, HttpSink, RunEmitter, SequenceCounter, Sink
from ..events.spool import Spool
from .context import RunContext
from .outputs import outputs_manifest

DEBUG_EVENTS_FILE = "aisci-debug-events.ndjson"
DEBUG_ARTIFACTS_DIR = "aisci-debug-artifacts"

_lock = threading.Lock()
_current: tuple[tuple, RunContext] | None = None
_hooked = False


def current() -> RunContext | None:
    """The context `init` built last in this process, unless it was closed."""
    return _current[1] if _current and not _current[1].closed else None


def _sink(info: RunInfo, cwd: Path) -> Sink:
    if info.events_url and os.environ.get(RUN_TOKEN_ENV):
        # Under a worker: the run-scoped token, good for this run and lease epoch only.
        return HttpSink(info.events_url, api_key=os.environ[RUN_TOKEN_ENV])
    if info.events_url:
        return HttpSink(info.events_url, api_key=os.environ.get(API_KEY_ENV),
                        hmac=os.environ.get(AUTH_MODE_ENV) == "hmac")
    return DebugSink(cwd / DEBUG_EVENTS_FILE)  # quiet: events go to the file only


def _spool(info: RunInfo) -> Spool | None:
    if not (info.spool_dir and info.events_url):
        return None
    if info.spool_max_bytes:
        return Spool(Path(info.spool_dir), max_bytes=info.spool_max_bytes)
    return Spool(Path(info.spool_dir))


def build(info: RunInfo, stage: str, cwd: Path) -> RunContext:
    """A fresh context for `info` (no registry, no exit hook: `init` adds those)."""
    source = info.event_source or f"notebook://{os.uname().nodename}"
    # What the notebook emits is scrubbed of the secrets in its environment (LLM keys).
    emitter = Emitter(_sink(info, cwd), source=source, spool=_spool(info),
                      scrubber=scrub_from_env())
    sequence = SequenceCounter(Path(info.seq_path)) if info.seq_path else None
    run_id = info.run_id or "debug-run"
    events = RunEmitter(emitter, run_id, sequence=sequence, traceparent=info.traceparent,
                        epoch=info.lease_epoch)
    return RunContext(run_id=run_id, stage=stage, idea=dict(info.idea or {}), events=events,
                      outputs_path=outputs_manifest(cwd, stage),
                      inputs={s: dict(o) for s, o in (info.inputs or {}).items()},
                      debug=not info.events_url, debug_artifacts=cwd / DEBUG_ARTIFACTS_DIR)


def _close_current() -> None:
    ctx = current()
    if ctx is not None:
        ctx.close(timeout_s=5)


def init(aisci: RunInfo | dict[str, Any] | None = None, *, stage: str = "Stage_1"
         ) -> RunContext:
    """The run context for the injected run info (`None`: a local run, events to a file).

    Idempotent per kernel: the same run info, stage and working directory give the same
    context back; anything else closes the previous context first.
    """
    global _current, _hooked
    info = RunInfo.of(aisci)
    cwd = Path.cwd().resolve()
    key = (info.model_dump_json(), stage, str(cwd))
    with _lock:
        if _current is not None:
            old_key, old = _current
            if old_key == key and not old.closed:
                return old
            if not old.closed:
                old.close(timeout_s=5)
        ctx = build(info, stage, cwd)
        _current = (key, ctx)
        if not _hooked:
            atexit.register(_close_current)
            _hooked = True
        return ctx
