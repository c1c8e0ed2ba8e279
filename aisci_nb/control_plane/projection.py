"""Projecting events onto the read model (`runs`, `stages`, `artifacts`, `validations`, ...).

Every update is idempotent and tolerant of order, so replaying any events any number of
times, in any order, leaves the same documents:
- status only advances in lifecycle rank (`lifecycle.advance_filter`);
- `lastEventSeq` and progress only grow (`$max`); values that can go down (the current
  stage, its counters, a metric's latest value) are written only by an event with a higher
  sequence than the one that wrote them (a `...Seq` guard in the filter);
- counters are set from events or derived by aggregation, never incremented;
- documents with natural keys are upserted, per-event documents are keyed by the event id.

What the event log already answers is derived from it, not copied: a metric's series and
a search node's state are queries over `events` (see `readmodel/`).

A batch is compacted per run before it is written: the latest progress of a stage, the
latest value of a metric and one `lastEventSeq` bump per run, so the number of database
operations grows with the runs and stages in a batch, not with its events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from pymongo import InsertOne, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from ..contract.envelope import Event
from ..contract.lifecycle import RunStatus, advance_filter
from ..db import new_id, utcnow
from .eventlog import fast

# event type -> (target status, the run's timestamp field set with it)
STATUS_EVENTS: dict[str, tuple[RunStatus, str | None]] = {
    "ai.run.started": (RunStatus.RUNNING, None),  # startedAt: see `_run`
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
DUPLICATE_KEY = 11000
UNORDERED = frozenset({"llm_calls"})


def _safe(name: str) -> str:
    """A metric or stage name usable as a MongoDB field name."""
    return name.replace(".", "_").replace("$", "_")


def stage_index(name: str) -> int | None:
    tail = name.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def order_key(e: Event) -> float:
    """The order of an event within its run: its sequence, else its time (older senders)."""
    return float(e.seq) if e.seq is not None else e.time.timestamp()


def _current_stage_pipeline() -> list[dict]:
    """`currentStage` = the latest started stage's name merged with that stage's state."""
    state_of_current = {"$arrayElemAt": [{"$map": {
        "input": {"$filter": {
            "input": {"$objectToArray": {"$ifNull": ["$stageState", {}]}},
            "cond": {"$eq": ["$$this.k", "$currentStage.name"]}}},
        "in": "$$this.v"}}, 0]}
    return [{"$set": {"currentStage": {"$cond": [
        {"$eq": [{"$type": "$currentStage.name"}, "string"]},
        {"$mergeObjects": [{"$ifNull": [state_of_current, {}]},
                           {"name": "$currentStage.name",
                            "startedSeq": "$currentStage.startedSeq"}]},
        "$currentStage"]}}}]


def _merge(update: dict, op: str, field: str, value: Any, pick: Callable) -> None:
    """Add `{op: {field: value}}` to an update, keeping the `pick` of two values for one field."""
    ops = update.setdefault(op, {})
    ops[field] = pick(ops[field], value) if field in ops else value


class _Batch:
    """The write operations of one projected batch, per collection."""

    def __init__(self) -> None:
        self.ops: dict[str, list] = defaultdict(list)

    def add(self, collection: str, op: UpdateOne | InsertOne) -> None:
        self.ops[collection].append(op)


class Projector:
    def __init__(self, db: Database, uri_for: Callable[[str], str]) -> None:
        self.db = db
        self.uri_for = uri_for

    def project(self, events: list[Event]) -> None:
        by_run: dict[str, list[Event]] = defaultdict(list)
        batch = _Batch()
        for e in events:
            if e.run_id:
                by_run[e.run_id].append(e)
            elif e.type == "ai.ideation.generated":
                self._ideation(e, batch)
        llm_runs = []
        for run_id, run_events in by_run.items():
            run_events.sort(key=order_key)
            self._run(run_id, run_events, batch)
            if any(e.type == "ai.llm.usage" for e in run_events):
                llm_runs.append(run_id)
        for name in ("llm_calls", "stages", "artifacts",
                     "validations", "hypotheses", "runs"):
            if batch.ops.get(name):
                self._write(name, batch.ops[name])
        for run_id in llm_runs:
            self._llm_totals(run_id)

    def _write(self, name: str, ops: list) -> None:
        """Apply in order (an upsert before the updates that expect its document; the last
        run update derives `currentStage`); per-event inserts, whose replays are duplicate-key
        errors and harmless, need no order."""
        try:
            fast(self.db, name).bulk_write(ops, ordered=name not in UNORDERED)
        except BulkWriteError as exc:
            if any(err.get("code") != DUPLICATE_KEY for err in exc.details["writeErrors"]):
                raise

    # -- runs ---------------------------------------------------------------------------

    def _run(self, run_id: str, events: list[Event], batch: _Batch) -> None:
        now = utcnow()
        seqs = [e.seq for e in events if e.seq is not None]
        base: dict[str, Any] = {"$set": {"updatedAt": now}}
        if seqs:
            base["$max"] = {"lastEventSeq": max(seqs)}
        batch.add("runs", UpdateOne({"_id": run_id}, base))  # later steps may add to `base`
        heartbeats = [e for e in events if e.type == "ai.run.heartbeat"]
        if heartbeats:
            last = heartbeats[-1]
            base.setdefault("$max", {})["lastHeartbeat"] = last.time
            telemetry = {k: last.data[k] for k in ("gpu_util", "mem_gb", "temp_c")
                         if k in last.data}
            batch.add("runs", UpdateOne(
                {"_id": run_id, "telemetrySeq": {"$not": {"$gte": order_key(last)}}},
                {"$set": {"telemetry": telemetry, "telemetrySeq": order_key(last)}}))

        progress: dict[str, list[Event]] = defaultdict(list)
        latest_metric: dict[tuple[str, str], Event] = {}
        stages_seen: dict[str, list[Event]] = defaultdict(list)
        for e in events:
            d = e.data
            if e.type in STATUS_EVENTS or e.type == "ai.run.status_changed":
                self._status(run_id, e, batch)
            if "stage" in d and e.type.startswith("ai.run."):
                stages_seen[d["stage"]].append(e)
            match e.type:
                case "ai.run.started":
                    # A fact even when a later status arrived first: not tied to the status.
                    base["$set"]["pod"] = {"id": d["pod_id"], "gpu": d.get("gpu"),
                                           "region": d.get("region")}
                    _merge(base, "$min", "startedAt", e.time, min)
                case "ai.run.stage_started":
                    self._stage_started(run_id, e, base, batch)
                case "ai.run.stage_progress":
                    progress[d["stage"]].append(e)
                case "ai.run.stage_metric":
                    latest_metric[(d["stage"], d["name"])] = e
                case "ai.run.stage_completed":
                    self._stage_completed(e, base)
                case "ai.artifact.registered":
                    batch.add("artifacts", self._artifact_op(e))
                case "ai.validation.auto_completed":
                    batch.add("validations", self._validation_op(e))
                case "ai.llm.usage":
                    batch.add("llm_calls", InsertOne({
                        "_id": e.id, "runId": run_id, **{k: d.get(k) for k in (
                            "model", "provider", "step", "prompt_tokens", "completion_tokens",
                            "cost_usd")}, "timestamp": e.time}))
        for stage_progress in progress.values():
            self._progress(run_id, stage_progress, base, batch)
        for (stage, name), e in latest_metric.items():
            key = f"{_safe(stage)}.{_safe(name)}"
            batch.add("runs", UpdateOne(
                {"_id": run_id, f"metricsSeq.{key}": {"$not": {"$gte": order_key(e)}}},
                {"$set": {f"metrics.{key}": e.data["value"],
                          f"metricsSeq.{key}": order_key(e)}}))
        for stage, stage_events in stages_seen.items():
            self._stage_doc(run_id, stage, stage_events, batch)
        if any(e.type in ("ai.run.stage_started", "ai.run.stage_progress",
                          "ai.run.stage_completed") for e in events):
            batch.add("runs", UpdateOne({"_id": run_id}, _current_stage_pipeline()))

    def _status(self, run_id: str, e: Event, batch: _Batch) -> None:
        d = e.data
        if e.type == "ai.run.status_changed":
            try:
                status, time_field = RunStatus(d["to"]), None
            except ValueError:
                return
        else:
            status, time_field = STATUS_EVENTS[e.type]
        sets: dict[str, Any] = {"updatedAt": utcnow()}
        if e.type == "ai.run.failed":
            error = {"errorType": d["code"], "errorMessage": d["message"],
                     "errorTraceback": d.get("traceback"), "retryable": d["retryable"]}
            if d["retryable"]:
                # The queue decides whether a retryable failure is re-queued or final.
                batch.add("runs", UpdateOne({"_id": run_id}, {"$set": {
                    "lastError": {**error, "at": e.time, "stage": d.get("stage")}}}))
                return
            sets.update(error)
        elif e.type == "ai.run.completed":
            sets["totalDuration_s"] = d["total_duration_s"]
        sets["status"] = status.value
        if time_field:
            sets[time_field] = e.time
        batch.add("runs", UpdateOne(advance_filter(run_id, status), {"$set": sets}))

    def _stage_started(self, run_id: str, e: Event, base: dict, batch: _Batch) -> None:
        stage = e.data["stage"]
        key = order_key(e)
        batch.add("runs", UpdateOne(
            {"_id": run_id, "currentStage.startedSeq": {"$not": {"$gte": key}}},
            {"$set": {"currentStage": {"name": stage, "startedSeq": key}}}))
        _merge(base, "$min", f"stageTiming.{stage}.startedAt", e.time, min)
        _merge(base, "$max", f"stageState.{stage}.progress", 0.0, max)

    def _progress(self, run_id: str, events: list[Event], base: dict, batch: _Batch) -> None:
        """Per-stage counters from the newest progress event that has counters; progress
        itself only grows. The worker's cells-done reports carry progress alone, so they
        never hide the notebook's counters, whichever arrives first."""
        state = f"stageState.{events[0].data['stage']}"
        _merge(base, "$max", f"{state}.progress", max(e.data["progress"] for e in events), max)
        counted = [e for e in events if _PROGRESS_FIELDS.keys() & e.data.keys()]
        if not counted:
            return
        e = max(counted, key=order_key)
        key = order_key(e)
        counters = {f"{state}.{dst}": e.data[src]
                    for src, dst in _PROGRESS_FIELDS.items() if src in e.data}
        batch.add("runs", UpdateOne(
            {"_id": run_id, f"{state}.progressSeq": {"$not": {"$gte": key}}},
            {"$set": {**counters, f"{state}.progressSeq": key}}))

    def _stage_completed(self, e: Event, base: dict) -> None:
        d = e.data
        stage = d["stage"]
        base["$set"][f"stageTiming.{stage}.completedAt"] = e.time
        if d.get("duration_s") is not None:
            base["$set"][f"stageTiming.{stage}.duration_s"] = d["duration_s"]
        _merge(base, "$max", f"stageState.{stage}.progress", 1.0, max)

    # -- other collections ---------------------------------------------------------------

    def _stage_doc(self, run_id: str, stage: str, events: list[Event], batch: _Batch) -> None:
        key = {"runId": run_id, "name": stage}
        now = utcnow()
        progress = max((e.data["progress"] for e in events
                        if e.type == "ai.run.stage_progress"), default=0.0)
        batch.add("stages", UpdateOne(key, {
            "$setOnInsert": {"_id": new_id(), "index": stage_index(stage), "status": "PENDING",
                             "createdAt": now},
            "$set": {"updatedAt": now}, "$max": {"progress": progress}}, upsert=True))
        pending = {**key, "status": "PENDING"}
        open_ = {**key, "status": {"$in": ["PENDING", "RUNNING"]}}
        for e in events:
            if e.type == "ai.run.stage_started":
                batch.add("stages", UpdateOne(key, {"$min": {"startedAt": e.time},
                                                    "$set": {"desc": e.data.get("desc")}}))
                batch.add("stages", UpdateOne(pending, {"$set": {"status": "RUNNING"}}))
            elif e.type == "ai.run.stage_completed":
                batch.add("stages", UpdateOne(open_, {"$set": {
                    "status": "COMPLETED", "completedAt": e.time, "progress": 1.0,
                    "summary": e.data.get("summary"), "duration_s": e.data.get("duration_s")}}))
            elif e.type == "ai.run.failed" and not e.data["retryable"]:
                batch.add("stages", UpdateOne(open_, {"$set": {"status": "FAILED",
                                                               "completedAt": e.time}}))

    def _artifact_op(self, e: Event) -> UpdateOne:
        d = e.data
        now = utcnow()
        return UpdateOne(
            {"runId": d["run_id"], "key": d["key"]},
            {"$set": {"uri": self.uri_for(d["key"]), "sha256": d["sha256"], "size": d["bytes"],
                      "contentType": d["content_type"], "kind": d["kind"], "updatedAt": now,
                      "eventId": e.id},
             "$setOnInsert": {"_id": new_id(), "createdAt": now}},
            upsert=True,
        )

    def _validation_op(self, e: Event) -> UpdateOne:
        d = e.data
        now = utcnow()
        return UpdateOne(
            {"eventId": e.id},
            {"$setOnInsert": {"_id": new_id(), "runId": d["run_id"], "kind": "auto",
                              "verdict": d["verdict"], "rubric": d.get("scores"),
                              "notes": d.get("notes"), "createdAt": now, "updatedAt": now,
                              "createdBy": e.source}},
            upsert=True,
        )

    def _ideation(self, e: Event, batch: _Batch) -> None:
        d = e.data
        batch.add("hypotheses", UpdateOne(
            {"_id": d["hypothesis_id"], "ideation.completedAt": {"$exists": False}},
            {"$set": {"ideation.requestId": d["request_id"], "ideation.status": "COMPLETED",
                      "ideation.count": d["count"], "ideation.topK": d.get("top_k"),
                      "ideation.completedAt": e.time, "updatedAt": utcnow()}}))

    def _llm_totals(self, run_id: str) -> None:
        """Token and cost totals derived from the stored calls: a replay cannot double them."""
        rows = list(self.db.llm_calls.aggregate([
            {"$match": {"runId": run_id}},
            {"$group": {"_id": None, "calls": {"$sum": 1},
                        "promptTokens": {"$sum": "$prompt_tokens"},
                        "completionTokens": {"$sum": "$completion_tokens"},
                        "costUsd": {"$sum": "$cost_usd"}}},
        ]))
        if rows:
            totals = {k: v for k, v in rows[0].items() if k != "_id"}
            self.db.runs.update_one({"_id": run_id}, {"$set": {"llmUsage": totals}})
