"""Projecting events onto the read model (`runs`, `stages`, `artifacts`, `validations`).

Every update is idempotent and tolerant of order: status moves only through the lifecycle's
conditional filter, `lastEventSeq` and progress only grow (`$max`), counters are set rather
than incremented, and documents keyed by natural keys are upserted. Replaying any events
any number of times leaves the same documents.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymongo import UpdateOne
from pymongo.database import Database

from ..db import new_id, utcnow
from ..envelope import Event
from ..lifecycle import RunStatus, transition_filter

# event type -> (target status, the run's timestamp field set with it)
STATUS_EVENTS: dict[str, tuple[RunStatus, str | None]] = {
    "ai.run.started": (RunStatus.RUNNING, "startedAt"),
    "ai.run.completed": (RunStatus.COMPLETED, "completedAt"),
    "ai.run.failed": (RunStatus.FAILED, "failedAt"),
    "ai.run.canceled": (RunStatus.CANCELED, "canceledAt"),
    "ai.validation.auto_started": (RunStatus.AUTO_VALIDATING, None),
    "ai.validation.auto_completed": (RunStatus.AWAITING_HUMAN, None),
}

_PROGRESS_FIELDS = {
    "iteration": "iteration",
    "max_iterations": "maxIterations",
    "good_nodes": "goodNodes",
    "buggy_nodes": "buggyNodes",
    "total_nodes": "totalNodes",
    "best_metric": "bestMetric",
    "eta_s": "eta_s",
}


def _safe(name: str) -> str:
    """A metric or stage name usable as a MongoDB field name."""
    return name.replace(".", "_").replace("$", "_")


def stage_index(name: str) -> int | None:
    tail = name.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


class Projector:
    """Turns a batch of events into bulk updates, applied in per-run sequence order."""

    def __init__(self, db: Database, uri_for: Callable[[str], str]) -> None:
        self.db = db
        self.uri_for = uri_for

    def project(self, events: list[Event]) -> None:
        runs: list[UpdateOne] = []
        stages: list[UpdateOne] = []
        artifacts: list[UpdateOne] = []
        validations: list[UpdateOne] = []
        ordered = sorted(events, key=lambda e: (e.run_id or "", e.seq is None, e.seq or 0))
        for e in ordered:
            self._run_ops(e, runs)
            self._stage_ops(e, stages)
            if e.type == "ai.artifact.registered":
                artifacts.append(self._artifact_op(e))
            elif e.type == "ai.validation.auto_completed":
                validations.append(self._validation_op(e))
        for name, ops in (("runs", runs), ("stages", stages), ("artifacts", artifacts),
                          ("validations", validations)):
            if ops:
                self.db[name].bulk_write(ops, ordered=True)

    def _run_ops(self, e: Event, ops: list[UpdateOne]) -> None:
        run_id = e.run_id
        if not run_id:
            return
        d = e.data
        now = utcnow()
        base: dict[str, Any] = {"$set": {"updatedAt": now}}
        if e.seq is not None:
            base["$max"] = {"lastEventSeq": e.seq}
        ops.append(UpdateOne({"_id": run_id}, base))

        target = STATUS_EVENTS.get(e.type)
        if e.type == "ai.run.status_changed":
            try:
                target = (RunStatus(d["to"]), None)
            except ValueError:
                target = None
        if target:
            status, time_field = target
            sets: dict[str, Any] = {"status": status.value, "updatedAt": now}
            if time_field:
                sets[time_field] = e.time
            if e.type == "ai.run.failed":
                sets.update(errorType=d["code"], errorMessage=d["message"],
                            errorTraceback=d.get("traceback"), retryable=d["retryable"])
            elif e.type == "ai.run.completed":
                sets["totalDuration_s"] = d["total_duration_s"]
            ops.append(UpdateOne(transition_filter(run_id, status), {"$set": sets}))

        if e.type == "ai.run.started":
            pod = {"id": d["pod_id"], "gpu": d.get("gpu"), "region": d.get("region")}
            ops.append(UpdateOne({"_id": run_id}, {"$set": {"pod": pod}}))
        elif e.type == "ai.run.heartbeat":
            tele = {k: d[k] for k in ("gpu_util", "mem_gb", "temp_c") if k in d}
            ops.append(UpdateOne({"_id": run_id},
                                 {"$max": {"lastHeartbeat": e.time}, "$set": {"telemetry": tele}}))
        elif e.type == "ai.run.stage_started":
            stage = d["stage"]
            ops.append(UpdateOne(
                {"_id": run_id, "currentStage.name": {"$ne": stage}},
                {"$set": {"currentStage": {"name": stage, "progress": 0.0}}},
            ))
            ops.append(UpdateOne({"_id": run_id},
                                 {"$min": {f"stageTiming.{_safe(stage)}.startedAt": e.time}}))
        elif e.type == "ai.run.stage_progress":
            counters = {f"currentStage.{dst}": d[src]
                        for src, dst in _PROGRESS_FIELDS.items() if src in d}
            update: dict[str, Any] = {"$max": {"currentStage.progress": d["progress"]}}
            if counters:
                update["$set"] = counters
            ops.append(UpdateOne({"_id": run_id, "currentStage.name": d["stage"]}, update))
        elif e.type == "ai.run.stage_metric":
            key = f"metrics.{_safe(d['stage'])}.{_safe(d['name'])}"
            ops.append(UpdateOne({"_id": run_id}, {"$set": {key: d["value"]}}))
        elif e.type == "ai.run.stage_completed":
            stage = _safe(d["stage"])
            timing: dict[str, Any] = {f"stageTiming.{stage}.completedAt": e.time}
            if d.get("duration_s") is not None:
                timing[f"stageTiming.{stage}.duration_s"] = d["duration_s"]
            ops.append(UpdateOne({"_id": run_id}, {"$set": timing}))
            ops.append(UpdateOne({"_id": run_id, "currentStage.name": d["stage"]},
                                 {"$set": {"currentStage.progress": 1.0}}))

    def _stage_ops(self, e: Event, ops: list[UpdateOne]) -> None:
        stage = e.data.get("stage")
        if not stage or not e.run_id or not e.type.startswith("ai.run."):
            return
        key = {"runId": e.run_id, "name": stage}
        now = utcnow()
        ops.append(UpdateOne(key, {"$setOnInsert": {
            "index": stage_index(stage), "status": "PENDING", "progress": 0.0,
            "createdAt": now,
        }, "$set": {"updatedAt": now}}, upsert=True))
        open_ = {**key, "status": {"$in": ["PENDING", "RUNNING"]}}
        if e.type == "ai.run.stage_started":
            ops.append(UpdateOne(open_, {"$set": {"status": "RUNNING", "desc": e.data.get("desc")},
                                         "$min": {"startedAt": e.time}}))
        elif e.type == "ai.run.stage_progress":
            ops.append(UpdateOne(key, {"$max": {"progress": e.data["progress"]}}))
        elif e.type == "ai.run.stage_completed":
            ops.append(UpdateOne(open_, {"$set": {
                "status": "COMPLETED", "completedAt": e.time, "progress": 1.0,
                "summary": e.data.get("summary"), "duration_s": e.data.get("duration_s")}}))
        elif e.type == "ai.run.failed":
            ops.append(UpdateOne(open_, {"$set": {"status": "FAILED", "completedAt": e.time}}))

    def _artifact_op(self, e: Event) -> UpdateOne:
        d = e.data
        now = utcnow()
        return UpdateOne(
            {"runId": d["run_id"], "key": d["key"]},
            {"$set": {"uri": self.uri_for(d["key"]), "sha256": d["sha256"], "size": d["bytes"],
                      "contentType": d["content_type"], "kind": d["kind"], "updatedAt": now,
                      "eventId": e.id},
             "$setOnInsert": {"createdAt": now}},
            upsert=True,
        )

    def _validation_op(self, e: Event) -> UpdateOne:
        d = e.data
        now = utcnow()
        return UpdateOne(
            {"eventId": e.id},
            {"$setOnInsert": {"_id": new_id(), "runId": d["run_id"], "kind": "auto",
                              "verdict": d["verdict"], "rubric": d.get("scores"),
                              "notes": d.get("notes"),
                              "createdAt": now, "updatedAt": now, "createdBy": e.source}},
            upsert=True,
        )
