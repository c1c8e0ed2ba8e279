"""`GET /metrics` in Prometheus format: what the ingest did, and how deep the queue is."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from pymongo.database import Database

from ..contract.lifecycle import RunStatus


class QueueDepth:
    """Runs per status, read from MongoDB at scrape time (the truth, not a cached count)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("aisci_runs", "Runs per status", labels=["status"])
        counts = dict.fromkeys((s.value for s in RunStatus), 0)
        for row in self.db.runs.aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}]):
            counts[str(row["_id"])] = row["n"]
        for status, n in counts.items():
            gauge.add_metric([status], n)
        yield gauge


class IngestMetrics:
    """One registry per app, so several control planes in one process do not collide."""

    def __init__(self, db: Database) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter("aisci_ingest_events", "Events accepted, by type", ["type"],
                              registry=self.registry)
        self.invalid = Counter("aisci_ingest_invalid_events", "Events refused as invalid",
                               registry=self.registry)
        self.duplicates = Counter("aisci_ingest_duplicate_events",
                                  "Events already stored (replays)", registry=self.registry)
        self.latency = Histogram(
            "aisci_ingest_request_seconds", "Time to store and project one ingest request",
            ["endpoint"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.registry.register(QueueDepth(db))
