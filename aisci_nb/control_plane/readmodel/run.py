"""One run's page: timeline, stages, search tree, metric series, events, artifacts, usage,
validations. Bounded whatever the run did: every list has a cap."""

from __future__ import annotations

from typing import Any

from pymongo.database import Database

from .events import metric_series

EVENTS_PER_PAGE = 200
SERIES_POINTS = 500  # per page; a chart a few hundred pixels wide shows no more
NODES_MAX = 500
ARTIFACTS_MAX = 500
# The events that move a run through its lifecycle: its timeline.
TIMELINE_TYPES = ["ai.run.enqueued", "ai.run.claimed", "ai.run.started", "ai.run.completed",
                  "ai.run.failed", "ai.run.canceled", "ai.run.cancel_requested",
                  "ai.run.status_changed", "ai.run.retry_scheduled", "ai.run.requeued",
                  "ai.validation.auto_started", "ai.validation.auto_completed",
                  "ai.validation.human_recorded", "ai.run.rerun_requested"]
LEVELS = ("debug", "info", "warn", "error")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")  # never SVG: it scripts


def artifact_view(a: dict[str, Any]) -> str:
    """How the page shows an artifact: figure inline, PDF inline, notebook as HTML, or a link."""
    key = str(a.get("key", ""))
    ctype = a.get("contentType") or a.get("content_type") or ""
    if key.endswith(".ipynb"):
        return "notebook"
    if ctype == "application/pdf" or key.endswith(".pdf"):
        return "pdf"
    if ctype in IMAGE_TYPES or key.endswith((".png", ".jpg", ".jpeg")):
        return "figure"
    return "file"


def event_query(run_id: str, level: str | None = None, type_prefix: str | None = None
                ) -> dict[str, Any]:
    flt: dict[str, Any] = {"runId": run_id}
    if level in LEVELS:
        flt["type"] = "ai.run.log"
        flt["level"] = level
    elif type_prefix:
        flt["type"] = {"$regex": "^" + type_prefix.replace(".", "\\.")}
    return flt


def run_events(db: Database, run_id: str, *, older: int = 0, level: str | None = None,
               type_prefix: str | None = None, limit: int = EVENTS_PER_PAGE
               ) -> tuple[list[dict[str, Any]], int]:
    """The newest `limit` events (skipping `older`), oldest first, and how many match."""
    flt = event_query(run_id, level, type_prefix)
    total = db.events.count_documents(flt)
    # By seq alone: the (runId, seq) index gives the order, no in-memory sort of the run.
    rows = list(db.events.find(flt, {"batch": 0, "hypothesisId": 0})
                .sort("seq", -1).skip(older).limit(limit))[::-1]
    return rows, total


def timeline(db: Database, run_id: str) -> list[dict[str, Any]]:
    return [{"type": e["type"], "time": e.get("timestamp"), "seq": e.get("seq"),
             "to": (e.get("data") or {}).get("to"), "source": e.get("source")}
            for e in db.events.find({"runId": run_id, "type": {"$in": TIMELINE_TYPES}},
                                    {"type": 1, "timestamp": 1, "seq": 1, "data.to": 1,
                                     "source": 1}).sort("seq", 1).limit(200)]


NODE_FIELDS = ("stage", "node_id", "parent_id", "op", "is_buggy", "metric", "exec_time_s",
               "reason")


def node_rows(db: Database, run_id: str, limit: int = NODES_MAX) -> list[dict[str, Any]]:
    """Each search node's fields folded in sequence order (as `events.node_states`), reading
    only the fields the tree draws: a node's code and output stay in its journal."""
    return list(db.events.aggregate([
        {"$match": {"runId": run_id, "type": {"$regex": "^ai\\.node\\."}}},
        {"$project": {"seq": 1, "type": 1, "data": {f: 1 for f in NODE_FIELDS}}},
        {"$sort": {"seq": 1}},
        {"$group": {"_id": {"stage": "$data.stage", "node": "$data.node_id"},
                    "state": {"$mergeObjects": "$data"}, "last_event": {"$last": "$type"}}},
        {"$replaceWith": {"$mergeObjects": ["$state", {"last_event": "$last_event"}]}},
        {"$sort": {"stage": 1, "node_id": 1}},
        {"$limit": limit},
    ]))


def tree(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The search nodes as the tree view needs them: id, parent, stage, state, metric."""
    best: dict[str, tuple[float, str]] = {}
    selected = {n.get("stage"): n.get("node_id") for n in nodes
                if n.get("last_event") == "ai.node.selected_best"}
    for n in nodes:
        m = n.get("metric")
        if n.get("is_buggy") is False and isinstance(m, int | float):
            st = str(n.get("stage"))
            if st not in best or m > best[st][0]:
                best[st] = (m, n["node_id"])
    out = []
    for n in nodes:
        st = n.get("stage")
        is_best = selected.get(st, (best.get(str(st)) or (None, None))[1]) == n.get("node_id")
        state = ("best" if is_best else "buggy" if n.get("is_buggy")
                 else "good" if n.get("is_buggy") is False else "pending")
        out.append({"id": n.get("node_id"), "parent": n.get("parent_id"), "stage": st,
                    "state": state, "metric": n.get("metric"), "op": n.get("op"),
                    "reason": n.get("reason"), "exec_time_s": n.get("exec_time_s"),
                    "last_event": n.get("last_event")})
    return out


def run_detail(db: Database, run_id: str, *, older: int = 0, level: str | None = None,
               type_prefix: str | None = None) -> dict[str, Any] | None:
    run = db.runs.find_one({"_id": run_id}, {"metricsSeq": 0, "telemetrySeq": 0})
    if run is None:
        return None
    hypothesis = db.hypotheses.find_one({"_id": run.get("hypothesisId")},
                                        {"title": 1, "idea": 1}) or {}
    stages = list(db.stages.find({"runId": run_id}).sort([("index", 1), ("name", 1)]))
    # The tree search's counters (good/buggy/total nodes, best metric, ETA) live on the run.
    state = run.get("stageState") or {}
    for s in stages:
        counters = state.get(s.get("name")) or {}
        s.update({k: v for k, v in counters.items() if (k != "progressSeq" and k not in s)
                  or (k == "progress" and (v or 0) > (s.get("progress") or 0))})
    events, total = run_events(db, run_id, older=older, level=level, type_prefix=type_prefix)
    artifacts = list(db.artifacts.find({"runId": run_id}).sort("key", 1).limit(ARTIFACTS_MAX))
    for a in artifacts:
        a["view"] = artifact_view(a)
    validations = list(db.validations.find({"runId": run_id}).sort("createdAt", 1).limit(50))
    return {
        "run": run, "hypothesis": hypothesis, "stages": stages, "timeline": timeline(db, run_id),
        "events": events, "events_total": total, "older": older,
        "artifacts": artifacts, "series": metric_series(db, run_id, limit=SERIES_POINTS),
        "tree": tree(node_rows(db, run_id)), "validations": validations,
    }
