"""Projecting events onto the read model (`runs`, `stages`, `artifacts`, `validations`, ...).

Every update is idempotent and tolerant of order, so replaying any events any number of
times, in any order, leaves the same documents:
- status only advances in lifecycle rank (`lifecycle.advance_filter`);
- `lastEventSeq` and progress only grow (`$max`); values that can go down (the current
  stage, its counters, a metric's latest value) are written only by an event with a higher
  sequence than the one that wrote them (a `...Seq` guard in the filter);
- counters are set from events or derived by aggregation, never incremented;
- documents with natural keys are upserted, per-event documents are keyed by the event id;
- `currentStage` is derived from per-stage facts that only grow (the first order key a
  stage was seen at, whether it completed): the newest stage with any event that is not
  completed, so a `stage_progress` that arrives before its `stage_started` (a reconnect,
  reordering) still makes its stage current.

Two control-plane processes may project the same run at once: every operation is a single
atomic document update with its guard in the filter, and an upsert that loses a race to
another process's insert is retried as the update it now is.

A failure never takes a batch down with it: if the batch's writes fail, each event is
projected alone and the ones that still fail are reported (`Projector.project` returns
them), so the sender is told and the rest of the batch lands.

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

from pymongo import InsertOne, UpdateOne, WriteConcern
from pymongo.database import Database
from pymongo.errors import BulkWriteError, PyMongoError

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
    """`currentStage` = the state of the newest stage (highest `firstSeq`) that is not
    completed, else of the newest stage, with its name; derived, so order does not matter."""
    stages = {"$filter": {"input": {"$objectToArray": {"$ifNull": ["$stageState", {}]}},
                          "cond": {"$eq": [{"$type": "$$this.v.firstSeq"}, "double"]}}}
    open_ = {"$filter": {"input": "$$stages", "cond": {"$ne": ["$$this.v.completed", True]}}}
    newest = {"$reduce": {
        "input": {"$cond": [{"$gt": [{"$size": open_}, 0]}, open_, "$$stages"]},
        "initialValue": None,
        "in": {"$cond": [{"$or": [{"$eq": ["$$value", None]},
                                  {"$gt": ["$$this.v.firstSeq", "$$value.v.firstSeq"]}]},
                         "$$this", "$$value"]}}}
    return [{"$set": {"currentStage": {"$let": {"vars": {"stages": stages}, "in": {"$let": {
        "vars": {"pick": newest},
        "in": {"$cond": [{"$eq": ["$$pick", None]}, "$currentStage",
                         {"$mergeObjects": ["$$pick.v", {"name": "$$pick.k"}]}]}}}}}}}]


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

    def project(self, events: list[Event]) -> dict[int, str]:
        """Project a batch; returns {position: reason} of the events that could not be.

        A database that cannot be reached raises (the sender retries the whole request);
        anything else failing is narrowed down to the events that cause it.
        """
        try:
            self._project(events)
            return {}
        except PyMongoError as exc:
            if not _is_write_failure(exc):
                raise
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            pass
        failed: dict[int, str] = {}
        for i, e in enumerate(events):
            try:
                self._project([e])
            except PyMongoError as exc:
                if not _is_write_failure(exc):
                    raise
                failed[i] = f"projection failed: {_reason(exc)}"
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
                failed[i] = f"projection failed: {type(exc).__name__}: {exc}"[:300]
        return failed

    def _project(self, events: list[Event]) -> None:
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
        names = [n for n in ("llm_calls", "stages", "artifacts", "validations", "hypotheses",
                             "runs") if batch.ops.get(n)]
        for name in names:
            # The last write waits for the journal, and with it everything before it.
            self._write(name, batch.ops[name], durable=name == names[-1] and not llm_runs)
        for run_id in llm_runs:
            self._llm_totals(run_id)

    def _write(self, name: str, ops: list, durable: bool = False) -> None:
        """Apply in order (an upsert before the updates that expect its document; the last
        run update derives `currentStage`); per-event inserts, whose replays are duplicate-key
        errors and harmless, need no order. An upsert that raced another process's insert
        of the same natural key fails with a duplicate key: the rest is applied again from
        it, as an update now."""
        coll = (self.db.get_collection(name, write_concern=WriteConcern(w="majority"))
                if durable else fast(self.db, name))
        ordered = name not in UNORDERED
        start = 0
        for _ in range(3):
            try:
                coll.bulk_write(ops[start:], ordered=ordered)
                return
            except BulkWriteError as exc:
                errors = exc.details["writeErrors"]
                if any(err.get("code") != DUPLICATE_KEY for err in errors):
                    raise
                if not ordered:
                    return
                start += errors[0]["index"]
                if not isinstance(ops[start], UpdateOne):
                    start += 1  # a replayed insert: nothing to redo
                if start >= len(ops):
                    return
        coll.bulk_write(ops[start:], ordered=ordered)

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
            stage = d.get("stage")
            if isinstance(stage, str) and (e.type.startswith(("ai.run.", "ai.node."))):
                stages_seen[stage].append(e)
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
                case "ai.run.stage_metric" if d.get("value") is not None:
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
                            "model", "provider", "step", "role", "prompt_tokens",
                            "completion_tokens", "cached_tokens", "cost_usd", "latency_s")},
                        "timestamp": e.time}))
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
            _merge(base, "$min", f"stageState.{stage}.firstSeq",
                   min(order_key(e) for e in stage_events), min)
        if stages_seen:
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
        flt = advance_filter(run_id, status)
        if status is RunStatus.AWAITING_HUMAN:
            # The review notebook says so before its step is stored: while its worker holds
            # the lease, the worker moves the run itself once the step is safe (a status
            # outside the leased ones would look like a takeover to it).
            flt["leaseExpiresAt"] = None
        batch.add("runs", UpdateOne(flt, {"$set": sets}))

    def _stage_started(self, run_id: str, e: Event, base: dict, batch: _Batch) -> None:
        stage = e.data["stage"]
        _merge(base, "$min", f"stageTiming.{stage}.startedAt", e.time, min)
        _merge(base, "$max", f"stageState.{stage}.progress", 0.0, max)

    def _progress(self, run_id: str, events: list[Event], base: dict, batch: _Batch) -> None:
        """Per-stage counters from the newest progress event that has counters; progress
        itself only grows. The worker's cells-done reports carry progress alone, so they
        never hide the notebook's counters, whichever arrives first."""
        state = f"stageState.{events[0].data['stage']}"
        values = [e.data["progress"] for e in events if e.data.get("progress") is not None]
        if values:
            _merge(base, "$max", f"{state}.progress", max(values), max)
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
        base["$set"][f"stageState.{stage}.completed"] = True

    # -- other collections ---------------------------------------------------------------

    def _stage_doc(self, run_id: str, stage: str, events: list[Event], batch: _Batch) -> None:
        key = {"runId": run_id, "name": stage}
        now = utcnow()
        progress = max((e.data["progress"] for e in events
                        if e.type == "ai.run.stage_progress" and "progress" in e.data),
                       default=0.0)
        batch.add("stages", UpdateOne(key, {
            "$setOnInsert": {"_id": new_id(), "index": stage_index(stage), "status": "PENDING",
                             "createdAt": now},
            "$set": {"updatedAt": now}, "$max": {"progress": progress}}, upsert=True))
        pending = {**key, "status": "PENDING"}
        open_ = {**key, "status": {"$in": ["PENDING", "RUNNING"]}}
        # Any event of a stage means it runs, whether or not its stage_started came first.
        batch.add("stages", UpdateOne(pending, {"$set": {"status": "RUNNING"}}))
        for e in events:
            if e.type == "ai.run.stage_started":
                batch.add("stages", UpdateOne(key, {"$min": {"startedAt": e.time},
                                                    "$set": {"desc": e.data.get("desc")}}))
            elif e.type == "ai.run.stage_completed":
                batch.add("stages", UpdateOne(open_, {"$set": {
                    "status": "COMPLETED", "completedAt": e.time, "progress": 1.0,
                    "summary": e.data.get("summary"), "duration_s": e.data.get("duration_s")}}))
            elif e.type == "ai.run.failed" and not e.data.get("retryable", True):
                batch.add("stages", UpdateOne(open_, {"$set": {"status": "FAILED",
                                                               "completedAt": e.time}}))

    def _artifact_op(self, e: Event) -> UpdateOne:
        d = e.data
        now = utcnow()
        return UpdateOne(
            {"runId": d["run_id"], "key": d["key"]},
            {"$set": {"uri": self.uri_for(d["key"]), "sha256": d.get("sha256"),
                      "size": d.get("bytes"), "contentType": d.get("content_type"),
                      "kind": d.get("kind"), "updatedAt": now, "eventId": e.id},
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
        # Only the request the hypothesis is on (or none yet): a late event of an earlier
        # request must not mark a newer one done. The worker may have written the result
        # already; `$min` keeps the earlier completion time, a replay changes nothing.
        batch.add("hypotheses", UpdateOne(
            {"_id": d["hypothesis_id"], "$or": [{"ideation.requestId": d["request_id"]},
                                                {"ideation.requestId": {"$exists": False}}]},
            {"$set": {"ideation.requestId": d["request_id"], "ideation.status": "COMPLETED",
                      "ideation.count": d.get("count"), "ideation.topK": d.get("top_k"),
                      "updatedAt": utcnow()},
             "$min": {"ideation.completedAt": e.time}}))

    def _llm_totals(self, run_id: str) -> None:
        """Token and cost totals derived from the stored calls (a replay cannot double them):
        for the run, per model, per step and per (step, model). Rows are sorted, and a
        total is written only over one counting fewer calls, so concurrent batches of one
        run cannot leave an older total behind."""
        sums = {"calls": {"$sum": 1},
                "promptTokens": {"$sum": "$prompt_tokens"},
                "completionTokens": {"$sum": "$completion_tokens"},
                "cachedTokens": {"$sum": {"$ifNull": ["$cached_tokens", 0]}},
                "costUsd": {"$sum": "$cost_usd"}}

        def by(*keys: str) -> list[dict]:
            group = {k: f"${k}" for k in keys}
            return [{"$group": {"_id": group, **sums}},
                    {"$replaceWith": {"$mergeObjects": ["$_id", {k: f"${k}" for k in sums}]}},
                    {"$sort": dict.fromkeys(keys, 1)}]

        rows = list(self.db.llm_calls.aggregate([
            {"$match": {"runId": run_id}},
            {"$facet": {"total": [{"$group": {"_id": None, **sums}}, {"$unset": "_id"}],
                        "byModel": by("model", "provider"), "byStep": by("step"),
                        "byStepModel": by("step", "model")}},
        ]))
        if not rows or not rows[0]["total"]:
            return
        facets = rows[0]
        for row in (r for rs in facets.values() for r in rs):
            row["costUsd"] = round(row["costUsd"], 8)  # the same sum whatever the order
        usage = {**facets["total"][0], "byModel": facets["byModel"],
                 "byStep": facets["byStep"], "byStepModel": facets["byStepModel"]}
        self.db.runs.update_one(
            {"_id": run_id, "llmUsage.calls": {"$not": {"$gte": usage["calls"]}}},
            {"$set": {"llmUsage": usage}})


def _is_write_failure(exc: PyMongoError) -> bool:
    """A write the server refused (bad update for this document), not an unreachable server."""
    from pymongo.errors import OperationFailure, WriteError

    return isinstance(exc, (BulkWriteError, WriteError, OperationFailure))


def _reason(exc: PyMongoError) -> str:
    if isinstance(exc, BulkWriteError):
        errors = exc.details.get("writeErrors") or [{}]
        return str(errors[0].get("errmsg", exc))[:300]
    return str(exc)[:300]
