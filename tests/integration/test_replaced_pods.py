"""Pods already in the field: the replaced system's event shapes, kept and projected.

Its pods send a metric as a description string (`"loss=0.0184"`), `null` for "no metric
yet", placeholder or truncated sha256s, the per-run order nested as `extensions.seq`, no
`subject`, `time` or `datacontenttype`, and leave optional fields out. Each shape below is
one such event; nothing is refused, what cannot be used is named in `warnings`, and the
read model shows what can.
"""

from __future__ import annotations

import json

import httpx
import pytest

from aisci_nb.contract.envelope import InvalidEvent, new_ulid, parse_event
from aisci_nb.contract.idea import example_idea
from aisci_nb.contract.tolerant import metric_number
from aisci_nb.control_plane.readmodel import metric_series, node_states
from aisci_nb.queue.submit import submit_hypothesis

from ..conftest import API_KEY, UI_AUTH, Stack

NDJSON = {"authorization": f"Bearer {API_KEY}", "content-type": "application/x-ndjson"}


def old_pod_event(run_id: str, seq: int, event_type: str, **data) -> dict:
    """As the replaced system's pods send it: nested seq, no subject/time/content type."""
    return {"specversion": "1.0", "id": new_ulid(), "source": f"aiscientist://pod/{run_id}",
            "type": event_type, "extensions": {"seq": seq}, "data": {"run_id": run_id, **data}}


def old_pod_story(run_id: str) -> list[dict]:
    e = old_pod_event
    return [
        e(run_id, 1, "ai.run.started", pod_id="pod-7"),
        e(run_id, 2, "ai.run.heartbeat", gpu_util=91.0),
        e(run_id, 3, "ai.run.stage_started", stage="Stage_1"),
        e(run_id, 4, "ai.run.stage_progress", stage="Stage_1", progress=0.5, best_metric=None),
        e(run_id, 5, "ai.node.created", stage="Stage_1", node_id="n1"),
        e(run_id, 6, "ai.node.code_generated", stage="Stage_1", node_id="n1", metric=None),
        e(run_id, 7, "ai.node.executing", stage="Stage_1", node_id="n1"),
        e(run_id, 8, "ai.node.completed", stage="Stage_1", node_id="n1", metric="loss=0.17",
          is_buggy=False),
        e(run_id, 9, "ai.node.selected_best", stage="Stage_1", node_id="n1",
          metric="loss=0.17"),
        e(run_id, 10, "ai.run.stage_metric", stage="Stage_1", name="loss", value="loss=0.17"),
        e(run_id, 11, "ai.run.stage_metric", stage="Stage_1", name="acc", value=None),
        e(run_id, 12, "ai.run.stage_progress", stage="Stage_1", progress=1.0,
          best_metric="loss=0.0184", iteration=4),
        e(run_id, 13, "ai.artifact.registered", key=f"runs/{run_id}/best.py", bytes=12,
          sha256="sha256-placeholder", content_type="text/x-python", kind="code"),
        e(run_id, 14, "ai.artifact.registered", key=f"runs/{run_id}/journal.json", bytes=40,
          sha256="9f86d081", content_type="application/json", kind="data"),
        e(run_id, 15, "ai.run.stage_completed", stage="Stage_1"),
        e(run_id, 16, "ai.run.log", level="info", message="reconnected"),
        # After a reconnect: Stage_2's first event is a progress report, no stage_started.
        e(run_id, 17, "ai.run.stage_progress", stage="Stage_2", progress=0.25,
          best_metric="val_loss=0.5"),
        e(run_id, 18, "ai.llm.usage", model="gpt-4o", prompt_tokens=10, completion_tokens=2,
          cost_usd=0.001),
        e(run_id, 19, "ai.paper.started"),
        e(run_id, 20, "ai.run.cell_completed", stage="Stage_2", cell_index=1),
    ]


def test_the_replaced_systems_events_are_kept_and_projected(stack: Stack) -> None:
    run_id = submit_hypothesis(stack.db, title="legacy", idea=example_idea()).run_id
    story = old_pod_story(run_id)
    body = "\n".join(json.dumps(e) for e in story).encode()
    resp = httpx.post(f"{stack.control_plane_url}/api/ingest/events", content=body,
                      headers=NDJSON)
    assert resp.status_code == 202, resp.text
    reply = resp.json()
    assert (reply["accepted"], reply["invalid"]) == (len(story), 0), reply["invalid_lines"]
    warned = {(w["line"], w["field"]) for w in reply["warnings"]}
    assert warned == {(8, "metric"), (9, "metric"), (10, "value"), (11, "value"),
                      (12, "best_metric"), (13, "sha256"), (14, "sha256"),
                      (17, "best_metric")}

    run = stack.db.runs.find_one({"_id": run_id})
    assert run["status"] == "RUNNING" and run["pod"]["id"] == "pod-7"
    assert run["lastEventSeq"] == 20
    assert run["currentStage"]["name"] == "Stage_2"  # from a progress event alone
    assert run["currentStage"]["progress"] == 0.25
    assert run["currentStage"]["bestMetric"] == 0.5
    assert run["stageState"]["Stage_1"]["bestMetric"] == 0.0184
    assert run["stageState"]["Stage_1"]["progress"] == 1.0
    assert run["metrics"] == {"Stage_1": {"loss": 0.17}}  # "acc": null is no metric yet
    assert run["telemetry"]["gpu_util"] == 91.0
    assert run["llmUsage"]["calls"] == 1
    stages = {s["name"]: s for s in stack.db.stages.find({"runId": run_id})}
    assert stages["Stage_1"]["status"] == "COMPLETED"
    assert stages["Stage_2"]["status"] == "RUNNING"  # it runs, its stage_started never came

    nodes = node_states(stack.db, run_id)
    assert [(n["node_id"], n["metric"], n["last_event"]) for n in nodes] == [
        ("n1", 0.17, "ai.node.selected_best")]
    assert nodes[0]["metric_description"] == "loss=0.17"
    series = metric_series(stack.db, run_id)
    assert [p["value"] for p in series["Stage_1"]["loss"]] == [0.17]
    artifacts = {a["key"].rsplit("/", 1)[1]: a for a in stack.db.artifacts.find({"runId": run_id})}
    assert artifacts["best.py"]["sha256"] is None and artifacts["best.py"]["size"] == 12

    # Kept as sent: the stored event has the original data and the warning.
    stored = stack.db.events.find_one({"_id.id": story[12]["id"]})
    assert stored["dataAsSent"]["sha256"] == "sha256-placeholder"
    assert stored["warnings"][0]["field"] == "sha256"
    assert stored["seq"] == 13
    page = httpx.get(f"{stack.control_plane_url}/runs/{run_id}", headers=UI_AUTH)
    assert page.status_code == 200 and "Stage_2" in page.text


def test_status_changes_and_keys_stay_strict() -> None:
    """The tolerant reader stops where safety starts: status events, ids, stage names, keys."""
    def event(event_type: str, **data) -> dict:
        return old_pod_event("r1", 1, event_type, **data)

    for bad in (event("ai.run.completed", total_duration_s="fast"),
                event("ai.run.failed", code="X", message="m", retryable="maybe"),
                event("ai.run.status_changed", to=5),
                event("ai.validation.auto_completed", verdict="great"),
                event("ai.run.stage_progress", stage=7, progress=0.5),
                event("ai.node.completed", stage="Stage_1", node_id=None),
                event("ai.run.stage_metric", stage="Stage_1", name=None, value=1.0),
                event("ai.artifact.registered", key="../x", bytes=1, sha256="a" * 64,
                      content_type="t", kind="k")):
        with pytest.raises(InvalidEvent):
            parse_event(bad)
    kept = parse_event(event("ai.run.stage_progress", stage="Stage_1", progress="half"))
    assert "progress" not in kept.data and kept.warnings[0][0] == "progress"
    assert kept.sent_data["progress"] == "half"


@pytest.mark.parametrize(("text", "number"), [
    ("loss=0.0184", 0.0184), ("0.5", 0.5), ("val_acc = 97.5", 97.5), ("acc: 0.9 (best)", 0.9),
    ("1e-3", 0.001), ("n/a", None), ("", None)])
def test_metric_description_numbers(text: str, number: float | None) -> None:
    assert metric_number(text) == number
