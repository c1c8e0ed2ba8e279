"""`python worker.py` / `python -m aisci_nb.worker.main`: arguments, signals, the excepthook."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from pathlib import Path

from ..contract.failures import from_exception
from ..contract.scrub import install_log_scrubber
from ..db import connect, ensure_indexes
from ..queue.dbretry import with_db_retry
from ..settings import WorkerMode, load_settings
from ..storage.store import open_store
from .loop import Worker
from .pipelines import EXPERIMENT_STEPS, NOTEBOOKS_DIR, Step

log = logging.getLogger("aisci.worker")


def install_excepthook(worker: Worker) -> None:
    """An exception that escapes every guard still ends the current run with ai.run.failed."""

    def report(exc: BaseException) -> None:
        events = worker.current
        if events is not None:
            with contextlib.suppress(Exception):
                events.emit("ai.run.failed", **{
                    k: v for k, v in from_exception(exc).event_data(events.run_id).items()
                    if k != "run_id"})
                worker.emitter.flush(timeout_s=10)

    previous = sys.excepthook

    def hook(exc_type, exc, tb) -> None:
        report(exc)
        previous(exc_type, exc, tb)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            report(args.exc_value)
        threading.__excepthook__(args)

    sys.excepthook = hook
    threading.excepthook = thread_hook


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="worker.py", description="Run research steps from the claims.")
    p.add_argument("--mode", choices=[m.value for m in WorkerMode],
                   help="what to claim (default: WORKER_MODE, else experiment)")
    p.add_argument("--region", help="only take runs of this region (and runs without one)")
    p.add_argument("--max-runs", type=int, help="exit after this many runs")
    p.add_argument("--exit-when-idle", action="store_true", help="exit when the queue is empty")
    p.add_argument("--drain", action="store_true",
                   help="on SIGTERM/SIGINT finish the current run before exiting "
                        "(default: release it to another worker)")
    p.add_argument("--notebooks-dir", type=Path, default=NOTEBOOKS_DIR)
    return p


def main(argv: list[str] | None = None, *, steps: tuple[Step, ...] = EXPERIMENT_STEPS) -> int:
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in {"worker_mode": args.mode, "worker_region": args.region}.items()
                 if v is not None}
    settings = load_settings(**overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    db = connect(settings)
    with_db_retry(ensure_indexes, db)
    worker = Worker(settings, db, open_store(settings), notebooks_dir=args.notebooks_dir,
                    steps=steps, drain=args.drain)
    install_log_scrubber(worker.scrubber)  # the worker's log never shows a secret
    install_excepthook(worker)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.request_stop())
    log.info("worker %s ready (mode %s, region %s)", worker.pod_id, settings.worker_mode.value,
             settings.worker_region or "any")
    worker.run_forever(max_runs=args.max_runs, exit_when_idle=args.exit_when_idle)
    log.info("worker %s stopped", worker.pod_id)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
