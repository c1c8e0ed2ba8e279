"""The ingest over real HTTP: batches with bad lines, duplicates, binary mode, credentials."""

from __future__ import annotations

import json

import httpx
from ulid import ULID

from aisci_nb.contract.envelope import make_event
from aisci_nb.contract.idea import example_idea
from aisci_nb.queue.submit import submit_hypothesis

from ..conftest import API_KEY, Stack

AUTH = {"authorization": f"Bearer {API_KEY}"}


def event(run_id: str, event_type: str, seq: int, **data) -> dict:
    return make_event(event_type, {"run_id": run_id, **data}, source="test://ingest",
                      seq=seq).to_json()


def post_ndjson(stack: Stack, lines: list[str], key: str = API_KEY) -> httpx.Response:
    return httpx.post(f"{stack.control_plane_url}/api/ingest/events",
                      content=("\n".join(lines) + "\n").encode(),
                      headers={"content-type": "application/x-ndjson",
                               "authorization": f"Bearer {key}"})


def test_bad_line_is_refused_by_number_and_neighbours_are_kept(stack: Stack) -> None:
    run_id = submit_hypothesis(stack.db, title="t", idea=example_idea()).run_id
    good1 = event(run_id, "ai.run.stage_started", 2, stage="Stage_1")
    good2 = event(run_id, "ai.run.stage_progress", 4, stage="Stage_1", progress=0.5,
                  iteration=3, max_iterations=6)
    unknown = {**event(run_id, "ai.run.log", 5, level="info", message="x"), "type": "ai.bogus"}
    bad_data = event(run_id, "ai.run.stage_metric", 6, stage="Stage_1", name="acc", value=1.0)
    bad_data["data"]["value"] = "high"
    resp = post_ndjson(stack, [json.dumps(good1), "{not json", json.dumps(good2),
                               json.dumps(unknown), json.dumps(bad_data)])
    assert resp.status_code == 202
    body = resp.json()
    assert (body["accepted"], body["duplicate"], body["invalid"]) == (2, 0, 3)
    assert [i["line"] for i in body["invalid_lines"]] == [2, 4, 5]
    assert "not JSON" in body["invalid_lines"][0]["reason"]
    assert "unknown event type" in body["invalid_lines"][1]["reason"]
    assert "data.value" in body["invalid_lines"][2]["reason"]

    assert stack.db.events.count_documents({"runId": run_id, "source": "test://ingest"}) == 2
    run = stack.db.runs.find_one({"_id": run_id})
    assert run["currentStage"] | {"name": "Stage_1", "progress": 0.5, "iteration": 3,
                                  "maxIterations": 6} == run["currentStage"]
    assert run["lastEventSeq"] == 4


def test_duplicates_are_stored_once(stack: Stack) -> None:
    run_id = submit_hypothesis(stack.db, title="t", idea=example_idea()).run_id
    ev = event(run_id, "ai.run.stage_metric", 2, stage="Stage_1", name="acc", value=0.9)
    url = f"{stack.control_plane_url}/api/ingest/event"
    first = httpx.post(url, json=ev, headers=AUTH)
    again = httpx.post(url, json=ev, headers={**AUTH, "content-type":
                                              "application/cloudevents+json"})
    assert (first.status_code, first.json()["status"]) == (201, "accepted")
    assert (again.status_code, again.json()["status"]) == (201, "duplicate")
    batch = post_ndjson(stack, [json.dumps(ev), json.dumps(ev)])
    assert batch.json() | {"invalid_lines": []} == {
        "accepted": 0, "duplicate": 2, "invalid": 0, "stale": 0, "invalid_lines": []}
    assert stack.db.events.count_documents({"_id": ev["id"]}) == 1
    assert stack.db.runs.find_one({"_id": run_id})["metrics"] == {"Stage_1": {"acc": 0.9}}


def test_same_id_from_another_source_is_a_conflict(stack: Stack) -> None:
    run_id = submit_hypothesis(stack.db, title="t", idea=example_idea()).run_id
    ev = event(run_id, "ai.run.log", 2, level="info", message="hi")
    other = {**ev, "source": "test://elsewhere"}
    assert post_ndjson(stack, [json.dumps(ev)]).json()["accepted"] == 1
    body = post_ndjson(stack, [json.dumps(other)]).json()
    assert body["invalid_lines"][0]["line"] == 1
    assert "another source" in body["invalid_lines"][0]["reason"]


def test_legacy_seq_binary_mode_and_batch_json(stack: Stack) -> None:
    run_id = submit_hypothesis(stack.db, title="t", idea=example_idea()).run_id
    legacy = event(run_id, "ai.run.started", 0, pod_id="old-pod")
    del legacy["sequence"]
    legacy["extensions"] = {"seq": 7}
    url = f"{stack.control_plane_url}/api/ingest/event"
    assert httpx.post(url, json=legacy, headers=AUTH).status_code == 201
    assert stack.db.events.find_one({"_id": legacy["id"]})["seq"] == 7
    run = stack.db.runs.find_one({"_id": run_id})
    assert run["status"] == "RUNNING"  # an older worker's start projects as DESIGN says
    assert run["pod"]["id"] == "old-pod" and run["startedAt"] is not None
    assert run["lastEventSeq"] == 7

    headers = {**AUTH, "ce-specversion": "1.0", "ce-id": str(ULID()), "ce-source": "test://bin",
               "ce-type": "ai.run.stage_metric", "ce-subject": f"run/{run_id}",
               "ce-time": "2026-11-28T10:00:00Z", "ce-sequence": "8",
               "content-type": "application/json"}
    data = {"run_id": run_id, "stage": "Stage_2", "name": "loss", "value": 0.25}
    resp = httpx.post(url, content=json.dumps(data), headers=headers)
    assert resp.status_code == 201, resp.text
    stored = stack.db.events.find_one({"_id": headers["ce-id"]})
    assert stored["seq"] == 8 and stored["source"] == "test://bin"

    arr = [event(run_id, "ai.run.log", 9, level="warn", message="careful"), {"id": "x"}]
    resp = httpx.post(f"{stack.control_plane_url}/api/ingest/events", content=json.dumps(arr),
                      headers={**AUTH, "content-type": "application/cloudevents-batch+json"})
    assert resp.status_code == 202
    assert resp.json()["accepted"] == 1
    assert resp.json()["invalid_lines"][0]["line"] == 2
    log = stack.db.events.find_one({"_id": arr[0]["id"]})
    assert (log["level"], log["message"]) == ("warn", "careful")


def test_single_event_errors_are_422_with_reason(stack: Stack) -> None:
    url = f"{stack.control_plane_url}/api/ingest/event"
    resp = httpx.post(url, content=b'{"specversion": "1.0"}', headers={
        **AUTH, "content-type": "application/json"})
    assert resp.status_code == 422
    assert resp.json()["detail"] == "id: required, a non-empty string"
    wrong_subject = event("r1", "ai.run.log", 1, level="info", message="m")
    wrong_subject["subject"] = "run/r2"
    resp = httpx.post(url, json=wrong_subject, headers=AUTH)
    assert resp.status_code == 422 and "subject" in resp.json()["detail"]


def test_rotated_keys_and_missing_credentials(stack: Stack) -> None:
    run_id = submit_hypothesis(stack.db, title="t", idea=example_idea()).run_id
    line = json.dumps(event(run_id, "ai.run.log", 2, level="info", message="m"))
    assert post_ndjson(stack, [line], key="old-rotated-key").status_code == 202
    refused = post_ndjson(stack, [line], key="wrong")
    assert refused.status_code == 401
    assert refused.json()["detail"] == "invalid API key"
    missing = httpx.post(f"{stack.control_plane_url}/api/ingest/event", json={})
    assert missing.status_code == 401
    assert "missing credentials" in missing.json()["detail"]


def test_events_of_an_old_lease_epoch_are_kept_but_not_projected(stack: Stack) -> None:
    run_id = submit_hypothesis(stack.db, title="t", idea=example_idea()).run_id
    stack.db.runs.update_one({"_id": run_id}, {"$set": {"leaseEpoch": 3}})

    def metric(name: str, seq: int, epoch: int | None) -> dict:
        return make_event("ai.run.stage_metric", {"run_id": run_id, "stage": "Stage_1",
                                                  "name": name, "value": 1.0},
                          source="test://fence", seq=seq, epoch=epoch).to_json()

    old, current, unstamped = metric("old", 2, 2), metric("current", 3, 3), metric("plain", 4, None)
    assert old["leaseepoch"] == 2 and "leaseepoch" not in unstamped
    bad = {**metric("bad", 5, 3), "leaseepoch": -1}
    resp = post_ndjson(stack, [json.dumps(e) for e in (old, current, unstamped, bad)])
    body = resp.json()
    assert (body["accepted"], body["stale"], body["invalid"]) == (3, 1, 1)
    assert "leaseepoch" in body["invalid_lines"][0]["reason"]
    run = stack.db.runs.find_one({"_id": run_id})
    assert run["metrics"] == {"Stage_1": {"current": 1.0, "plain": 1.0}}
    stored = stack.db.events.find_one({"_id": old["id"]})
    assert (stored["leaseEpoch"], stored["stale"]) == (2, True)  # kept for the record

    # Binary mode carries the epoch as a `ce-leaseepoch` header.
    headers = {**AUTH, "ce-specversion": "1.0", "ce-id": str(ULID()), "ce-source": "test://bin",
               "ce-type": "ai.run.log", "ce-subject": f"run/{run_id}", "ce-leaseepoch": "1",
               "content-type": "application/json"}
    resp = httpx.post(f"{stack.control_plane_url}/api/ingest/event", headers=headers,
                      content=json.dumps({"run_id": run_id, "level": "info", "message": "late"}))
    assert (resp.status_code, resp.json()["status"]) == (201, "stale")
    assert stack.db.events.find_one({"_id": headers["ce-id"]})["leaseEpoch"] == 1
