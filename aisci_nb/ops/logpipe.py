"""`python -m aisci_nb.ops.logpipe FILE`: copy stdin to a size-rotated log (and to a terminal).

`start_worker.sh` pipes the worker's whole output through this, tracebacks and notebook
output included, so `worker.log` never outgrows the disk: at `--max-bytes` it becomes
`worker.log.1` and the oldest of `--backups` copies is dropped (logging's own
RotatingFileHandler does the rotating). Ctrl+C is ignored here: the pipe ends when the
worker and the supervisor have written their last line and closed it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path


def pump(lines, handler: logging.Handler, echo=None) -> int:
    """Write each line to `handler` (and `echo`); returns how many lines went through."""
    count = 0
    for line in lines:
        text = line.rstrip("\n")
        handler.emit(logging.makeLogRecord({"msg": text, "levelno": logging.INFO}))
        if echo is not None:
            echo.write(text + "\n")
            echo.flush()
        count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m aisci_nb.ops.logpipe", description=__doc__)
    p.add_argument("file", type=Path)
    p.add_argument("--max-bytes", type=int, default=50 * 2**20)
    p.add_argument("--backups", type=int, default=5)
    p.add_argument("--tee", action="store_true", help="also copy every line to stdout")
    args = p.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    args.file.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(args.file, maxBytes=args.max_bytes, backupCount=args.backups,
                                  encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        with open(sys.stdin.fileno(), encoding="utf-8", errors="replace", closefd=False) as stdin:
            pump(stdin, handler, sys.stdout if args.tee else None)
    finally:
        handler.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
