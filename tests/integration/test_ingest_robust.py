"""The ingest under pressure: racing clients, shuffled batches, fuzzed bodies, credentials."""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aisci_nb.contract.envelope import make_event, new_ulid
from aisci_nb.contract.idea import example_idea
from aisci_nb.contract.signing import sign
from aisci_nb.control_plane.app import create_app
from aisci_nb.control_plane.readmodel import metric_series, node_states
from aisci_nb.queue.submit import submit_hypothesis

from ..conftest import API_KEY, UI_AUTH, Stack

AUTH = {"authorization": f"Bearer {API_KEY}"}
NDJSON = {**AUTH, "content-type": "application/x-ndjson"}


def run_story(run_id: str, source: str) -> list[dict]:
    """The events of a whole run, as a worker and its kernels send them."""
    seq = iter(range(2, 10_000))
    out: list[dict] = []

    def add(t: str, **data) -> None:
        out.append(make_event(t, {"run_id": run_id, **data}, source=source,
                              seq=next(seq)).to_json())

    add("ai.run.started", pod_id="pod-1", gpu="H200")
    add("ai.run.heartbeat", gpu_util=50.0, mem_gb=10.0, temp_c=60.0)
    for stage in ("Stage_1", "Stage_2"):
        add("ai.run.stage_started", stage=stage, desc=f"{stage} work")
        for i in range(1, 6):
            add("ai.run.stage_progress", stage=stage, progress=i / 5, iteration=i,
                max_iterations=5, good_nodes=i, buggy_nodes=5 - i, best_metric=i / 10)
            add("ai.node.completed", stage=stage, node_id=f"{stage}-n{i}", is_buggy=False,
                metric=i / 10)
            add("ai.run.stage_metric", stage=stage, name="val.acc", value=i / 10)
            add("ai.llm.usage", model="gpt-x", prompt_tokens=100 * i, completion_tokens=10,
                cost_usd=0.01)
        add("ai.run.stage_completed", stage=stage, duration_s=3.0, summary={"best": 0.5})
        add("ai.artifact.registered", key=f"runs/{run_id}/notebooks/{stage}.ipynb", bytes=10,
            sha256="a" * 64, content_type="application/x-ipynb+json", kind="notebook")
    add("ai.run.heartbeat", gpu_util=20.0, mem_gb=11.0, temp_c=55.0)
    add("ai.validation.auto_started", model="reviewer")
    add("ai.validation.auto_completed", verdict="pass", scores={"novelty": 3.0})
    return out


def post(stack: Stack, events: list[dict]) -> dict:
    body = "\n".join(json.dumps(e) for e in events).encode()
    resp = httpx.post(f"{stack.control_plane_url}/api/ingest/events", content=body,
                      headers=NDJSON, timeout=30)
    assert resp.status_code == 202, resp.text
    return resp.json()


def projected(stack: Stack, run_id: str) -> dict:
    """The read model of one run, without what legitimately differs (ids, clock times)."""
    volatile = {"_id", "updatedAt", "createdAt", "hypothesisId", "uri", "eventId", "runId"}

    def clean(doc):
        if isinstance(doc, dict):
            return {k: clean(v) for k, v in doc.items() if k not in volatile}
        if isinstance(doc, list):
            return [clean(v) for v in doc]
        return doc.replace(run_id, "RUN") if isinstance(doc, str) else doc

    run = stack.db.runs.find_one({"_id": run_id})
    return clean({
        "run": run,
        "stages": list(stack.db.stages.find({"runId": run_id}).sort("name", 1)),
        "artifacts": list(stack.db.artifacts.find({"runId": run_id}).sort("key", 1)),
        "validations": list(stack.db.validations.find({"runId": run_id})),
    })


def test_out_of_order_batches_project_like_in_order(stack: Stack) -> None:
    idea = example_idea()
    in_order = submit_hypothesis(stack.db, title="a", idea=idea).run_id
    story = run_story(in_order, "test://ordered")
    for i in range(0, len(story), 7):
        post(stack, story[i:i + 7])
    expected = projected(stack, in_order)
    assert expected["run"]["status"] == "AWAITING_HUMAN"
    assert expected["run"]["currentStage"]["name"] == "Stage_2"
    assert expected["run"]["metrics"] == {"Stage_1": {"val_acc": 0.5}, "Stage_2": {"val_acc": 0.5}}
    assert expected["run"]["llmUsage"]["promptTokens"] == 2 * 1500
    assert expected["run"]["telemetry"]["gpu_util"] == 20.0

    for seed in range(3):
        run_id = submit_hypothesis(stack.db, title="b", idea=idea).run_id
        events = [{**e, "id": new_ulid(), "subject": f"run/{run_id}",
                   "data": {**e["data"], "run_id": run_id} | (
                       {"key": e["data"]["key"].replace(in_order, run_id)}
                       if "key" in e["data"] else {})}
                  for e in story]
        rng = random.Random(seed)
        rng.shuffle(events)
        cuts = sorted(rng.sample(range(1, len(events)), 8))
        batches = [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)], strict=True)]
        rng.shuffle(batches)
        for batch in batches:
            post(stack, batch)
        post(stack, events[:10])  # and some replays
        got = projected(stack, run_id)
        for part in expected:
            assert got[part] == expected[part], f"seed {seed}: {part}"
        # What is derived from the event log is as exact as what is projected.
        assert node_states(stack.db, run_id) == [
            {**n, "run_id": run_id} for n in node_states(stack.db, in_order)]
        series = metric_series(stack.db, run_id)["Stage_2"]["val.acc"]
        assert [p["value"] for p in series] == [0.1, 0.2, 0.3, 0.4, 0.5]

    nodes = node_states(stack.db, in_order, stage="Stage_1")
    assert [n["node_id"] for n in nodes] == [f"Stage_1-n{i}" for i in range(1, 6)]
    assert nodes[0]["last_event"] == "ai.node.completed" and nodes[0]["metric"] == 0.1
    page = httpx.get(f"{stack.control_plane_url}/runs/{in_order}", headers=UI_AUTH).text
    assert "Stage_1-n5" in page and "0.1, 0.2, 0.3, 0.4, 0.5" in page


def test_the_same_batch_from_four_clients_is_stored_once(stack: Stack) -> None:
    run_id = submit_hypothesis(stack.db, title="race", idea=example_idea()).run_id
    story = run_story(run_id, "test://race")
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: post(stack, story), range(4)))
    assert sum(a["accepted"] for a in answers) == len(story)
    assert sum(a["duplicate"] for a in answers) == 3 * len(story)
    assert stack.db.events.count_documents({"runId": run_id}) == len(story) + 1  # + enqueued
    assert stack.db.llm_calls.count_documents({"runId": run_id}) == 10
    run = stack.db.runs.find_one({"_id": run_id})
    assert run["llmUsage"]["calls"] == 10 and run["status"] == "AWAITING_HUMAN"


def test_credentials_hmac_expired_replayed(stack: Stack) -> None:
    run_id = submit_hypothesis(stack.db, title="auth", idea=example_idea()).run_id
    url = f"{stack.control_plane_url}/api/ingest/events"

    def signed(body: bytes, ts: int | None = None, key: str = API_KEY) -> httpx.Response:
        stamp = str(ts if ts is not None else int(time.time()))
        return httpx.post(url, content=body, headers={
            "content-type": "application/x-ndjson", "x-aisci-timestamp": stamp,
            "x-aisci-signature": sign(key, stamp, body)})

    body = json.dumps(make_event("ai.run.log", {"run_id": run_id, "level": "info",
                                                "message": "signed"}, source="test://h")
                      .to_json()).encode()
    first = signed(body)
    assert first.status_code == 202 and first.json()["accepted"] == 1
    def headers_of(resp: httpx.Response) -> dict:
        return {k: v for k, v in resp.request.headers.items() if k.startswith("x-aisci")
                or k == "content-type"}

    replay = httpx.post(url, content=body, headers=headers_of(first))
    assert (replay.status_code, replay.json()["detail"]) == (
        401, "replayed signature: this request was already accepted")
    expired = signed(body, ts=int(time.time()) - 3600)
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    wrong = signed(body, key="not-the-key")
    assert (wrong.status_code, wrong.json()["detail"]) == (401, "invalid signature")
    tampered = httpx.post(url, content=body + b"\n", headers=headers_of(signed(body)))
    assert tampered.status_code == 401
    missing = httpx.post(url, content=body, headers={"content-type": "application/x-ndjson"})
    assert missing.status_code == 401 and "missing credentials" in missing.json()["detail"]


def test_metrics_count_events_and_queue_depth(stack: Stack) -> None:
    run_id = submit_hypothesis(stack.db, title="m", idea=example_idea()).run_id
    story = run_story(run_id, "test://metrics")
    post(stack, [*story, {"not": "an event"}])
    text = httpx.get(f"{stack.control_plane_url}/metrics", headers=UI_AUTH).text
    assert 'aisci_runs{status="AWAITING_HUMAN"} 1.0' in text
    assert 'aisci_ingest_events_total{type="ai.run.stage_progress"}' in text
    assert "aisci_ingest_invalid_events_total" in text
    assert "aisci_ingest_request_seconds_bucket" in text


# -- fuzzing ------------------------------------------------------------------------------

def _valid(run_id: str) -> dict:
    return make_event("ai.run.stage_metric", {"run_id": run_id, "stage": "Stage_1",
                                              "name": "acc", "value": 0.5},
                      source="fuzz://ok", seq=3).to_json()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


@st.composite
def mutated_event(draw, run_id: str) -> dict:
    event = _valid(run_id)
    target = draw(st.sampled_from(["envelope", "data", "drop", "type"]))
    if target == "envelope":
        event[draw(st.sampled_from(list(event)))] = draw(json_values)
    elif target == "data":
        event["data"][draw(st.sampled_from(["stage", "name", "value", "run_id", "$set", "x"]))] \
            = draw(json_values)
    elif target == "drop":
        event.pop(draw(st.sampled_from(list(event))))
    else:
        event["type"] = draw(st.sampled_from(["ai.run.failed", "ai.run.started", "bogus",
                                              "ai.run.stage_progress", "ai.node.completed"]))
    return event


@st.composite
def fuzz_body(draw, run_id: str) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        return json.dumps(draw(json_values)).encode()
    events = draw(st.lists(mutated_event(run_id), min_size=1, max_size=4))
    lines = [json.dumps(e).encode() for e in events]
    if kind == 3:
        lines.insert(draw(st.integers(0, len(lines))), draw(st.binary(max_size=40)))
    return b"\n".join(lines)


@pytest.fixture
def inprocess(stack: Stack):
    with TestClient(create_app(stack.settings), raise_server_exceptions=False) as client:
        yield client


FUZZ_CASES = 10_000


def test_fuzzed_bodies_never_give_a_5xx_nor_half_writes(stack: Stack, inprocess) -> None:
    run_id = submit_hypothesis(stack.db, title="fuzz", idea=example_idea()).run_id
    seen: dict[int, int] = {}

    @settings(max_examples=FUZZ_CASES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(body=fuzz_body(run_id), endpoint=st.sampled_from(["events", "event"]),
           ctype=st.sampled_from(["application/x-ndjson", "application/json",
                                  "application/cloudevents-batch+json",
                                  "application/cloudevents+json", "text/plain"]))
    def check(body: bytes, endpoint: str, ctype: str) -> None:
        resp = inprocess.post(f"/api/ingest/{endpoint}", content=body,
                              headers={**AUTH, "content-type": ctype})
        seen[resp.status_code] = seen.get(resp.status_code, 0) + 1
        assert resp.status_code < 500, (resp.status_code, resp.text, body[:300])

    check()
    assert sum(seen.values()) == FUZZ_CASES
    assert seen.get(202, 0) > 1000 and seen.get(422, 0) > 100  # both paths were exercised
    # Nothing half-written: every stored batch finished its projection.
    batches = stack.db.events.distinct("batch", {"source": {"$regex": "^fuzz"}})
    assert batches, "no fuzzed event was ever valid"
    assert stack.db.ingest_batches.count_documents({"_id": {"$in": batches}}) == len(batches)
