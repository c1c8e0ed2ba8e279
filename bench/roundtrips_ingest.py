"""MongoDB round trips per ingest request, counted with pymongo command monitoring.

Runs the control plane in process (its own MongoClient carries the listener) against a
private mongod and posts one NDJSON batch of each size; prints the commands each request
sent, by name.

    python bench/roundtrips_ingest.py
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import orjson
from fastapi.testclient import TestClient
from pymongo import monitoring

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import private_mongod
from bench_ingest import workload

from aisci_nb.db import new_id
from aisci_nb.settings import Settings


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in ("hello", "isMaster", "ismaster", "endSessions"):
            self.seen[event.command_name] += 1

    def succeeded(self, event) -> None: ...

    def failed(self, event) -> None: ...


def main() -> None:
    listener = Commands()
    monitoring.register(listener)
    from aisci_nb.control_plane.app import create_app
    from aisci_nb.queue.claims import new_run_document

    with private_mongod("rt") as (url, root):
        settings = Settings(_env_file=None, mongodb_url=url, ingest_api_keys="k",
                            artifacts_dir=str(root / "artifacts"))
        app = create_app(settings)
        db = app.state.aisci.db
        runs = [new_id()]
        db.runs.insert_many([{**new_run_document("h"), "_id": r} for r in runs])
        headers = {"authorization": "Bearer k", "content-type": "application/x-ndjson"}
        with TestClient(app) as client:
            for batch in (1, 50, 500):
                events = workload(batch * 2, runs, batch)
                for round_ in range(2):  # the second batch: the run's documents exist
                    body = b"\n".join(orjson.dumps(e) for e in
                                      events[round_ * batch:(round_ + 1) * batch])
                    listener.seen.clear()
                    resp = client.post("/api/ingest/events", content=body, headers=headers)
                    assert resp.status_code == 202, resp.text
                    seen = dict(listener.seen)
                print(f"batch {batch:>4}: {sum(seen.values()):>3} round trips {seen}")


if __name__ == "__main__":
    main()
