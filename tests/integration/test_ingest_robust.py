"""The ingest under pressure: racing clients, shuffled batches, fuzzed bodies, credentials."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import psutil
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aisci_nb.contract.envelope import make_event, new_ulid
from aisci_nb.contract.idea import example_idea
from aisci_nb.contract.signing import sign
from aisci_nb.control_plane.app import create_app
from aisci_nb.control_plane.readmodel import metric_series, node_states
from aisci_nb.events.emitter import DEAD_LETTER, Emitter, HttpSink
from aisci_nb.events.spool import Spool
from aisci_nb.ops.services import free_port, launch_control_plane, stop_pid
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


# What broke the ingest before (issue 13): non-ASCII digits, huge numbers, times that leave
# datetime's range once moved to UTC, keys that climb out of the store.
HOSTILE = ["\u00b2", "\u00b9", "9" * 5000, "0001-01-01T00:00:00+01:00",
           "9999-12-31T23:59:59-01:00", "runs/../etc/passwd", "..", "\x00", "$where",
           "loss=0.0184", 2**64, -1, 1e308]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=20) | st.sampled_from(HOSTILE),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


@st.composite
def mutated_event(draw, run_id: str) -> dict:
    event = _valid(run_id)
    target = draw(st.sampled_from(["envelope", "data", "drop", "type", "extension"]))
    if target == "envelope":
        event[draw(st.sampled_from(list(event)))] = draw(json_values)
    elif target == "extension":
        name = draw(st.sampled_from(["sequence", "leaseepoch", "time", "extensions"]))
        event[name] = {"seq": draw(json_values)} if name == "extensions" else draw(json_values)
    elif target == "data":
        event["data"][draw(st.sampled_from(["stage", "name", "value", "run_id", "$set", "x",
                                            "key", "sha256", "metric"]))] = draw(json_values)
    elif target == "drop":
        event.pop(draw(st.sampled_from(list(event))))
    else:
        event["type"] = draw(st.sampled_from(["ai.run.failed", "ai.run.started", "bogus",
                                              "ai.run.stage_progress", "ai.node.completed"]))
    return event


@st.composite
def fuzz_body(draw, run_id: str) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0 and draw(st.booleans()):
        return draw(st.sampled_from([h.encode() if isinstance(h, str) else str(h).encode()
                                     for h in HOSTILE]))
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


FUZZ_CASES = int(os.environ.get("AISCI_FUZZ_CASES", "10000"))  # fewer for a quick local run


def test_fuzzed_bodies_never_give_a_5xx_nor_half_writes(stack: Stack, inprocess) -> None:
    run_id = submit_hypothesis(stack.db, title="fuzz", idea=example_idea()).run_id
    seen: dict[int, int] = {}

    @settings(max_examples=FUZZ_CASES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(body=fuzz_body(run_id), endpoint=st.sampled_from(["events", "event"]),
           ctype=st.sampled_from(["application/x-ndjson", "application/json",
                                  "application/cloudevents-batch+json",
                                  "application/cloudevents+json", "text/plain"]),
           binary=st.none() | st.dictionaries(
               st.sampled_from(["ce-sequence", "ce-leaseepoch", "ce-time", "ce-id",
                                "ce-type", "ce-source", "ce-subject"]),
               st.sampled_from([str(h) for h in HOSTILE]) | st.text(
                   alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=30),
               max_size=4))
    def check(body: bytes, endpoint: str, ctype: str, binary: dict | None) -> None:
        headers = {**AUTH, "content-type": ctype}
        if binary is not None and endpoint == "event":  # binary mode, hostile attributes
            headers |= {"ce-specversion": "1.0", "ce-id": new_ulid(), "ce-source": "fuzz://b",
                        "ce-type": "ai.run.log"} | {k: v.encode("latin-1", "replace")
                                                    for k, v in binary.items()}
        resp = inprocess.post(f"/api/ingest/{endpoint}", content=body, headers=headers)
        seen[resp.status_code] = seen.get(resp.status_code, 0) + 1
        assert resp.status_code < 500, (resp.status_code, resp.text, body[:300])

    check()
    assert sum(seen.values()) == FUZZ_CASES
    # both paths were exercised
    assert seen.get(202, 0) > FUZZ_CASES // 10 and seen.get(422, 0) > FUZZ_CASES // 100
    # Nothing half-written: every stored event was projected (none flagged as failed).
    assert stack.db.events.count_documents({"source": {"$regex": "^fuzz"}}), "none was valid"
    assert stack.db.events.count_documents({"projectionError": {"$exists": True}}) == 0


# -- issue 13: bad input answers 4xx, one bad event blocks nothing --------------------------

def _log(run_id: str, seq: int = 2, **attrs) -> dict:
    event = make_event("ai.run.log", {"run_id": run_id, "level": "info", "message": "m"},
                       source="test://hostile", seq=seq).to_json()
    return {**event, **attrs}


HOSTILE_ENVELOPES = {
    "sequence superscript two": {"sequence": "\u00b2"},
    "sequence of 5,000 digits": {"sequence": "9" * 5000},
    "leaseepoch superscript one": {"leaseepoch": "\u00b9"},
    "time at year 1 with an offset": {"time": "0001-01-01T00:00:00+01:00"},
    "time at year 9999 with an offset": {"time": "9999-12-31T23:59:59-01:00"},
    "nested seq superscript": {"sequence": None, "extensions": {"seq": "\u00b2"}},
}


def test_hostile_envelope_values_answer_4xx_and_the_batch_goes_on(stack: Stack) -> None:
    run_id = submit_hypothesis(stack.db, title="hostile", idea=example_idea()).run_id
    url = f"{stack.control_plane_url}/api/ingest"
    for name, attrs in HOSTILE_ENVELOPES.items():
        resp = httpx.post(f"{url}/event", json=_log(run_id, **attrs), headers=AUTH)
        assert resp.status_code == 422, (name, resp.status_code, resp.text)
    stage_not_a_string = make_event("ai.run.stage_progress", {
        "run_id": run_id, "stage": "Stage_1", "progress": 0.5}, source="test://h").to_json()
    stage_not_a_string["data"]["stage"] = {"$gt": ""}
    climbing_key = make_event("ai.artifact.registered", {
        "run_id": run_id, "key": "runs/x/a", "bytes": 1, "sha256": "a" * 64,
        "content_type": "text/plain", "kind": "log"}, source="test://h").to_json()
    climbing_key["data"]["key"] = f"runs/{run_id}/../../other/secret"
    for bad in (stage_not_a_string, climbing_key):
        resp = httpx.post(f"{url}/event", json=bad, headers=AUTH)
        assert resp.status_code == 422, resp.text
    # In a batch each is refused by line, and the good line between them is kept.
    lines = [_log(run_id, **a) for a in HOSTILE_ENVELOPES.values()]
    lines.insert(3, _log(run_id, seq=9))
    lines += [stage_not_a_string, climbing_key]
    body = post(stack, lines)
    assert (body["accepted"], body["invalid"]) == (1, len(lines) - 1)
    assert [i["line"] for i in body["invalid_lines"]] == [n for n in range(1, len(lines) + 1)
                                                          if n != 4]
    assert stack.db.runs.find_one({"_id": run_id})["lastEventSeq"] == 9


def test_hostile_binary_headers_answer_4xx(stack: Stack) -> None:
    run_id = submit_hypothesis(stack.db, title="bin", idea=example_idea()).run_id
    base = {**AUTH, "ce-specversion": "1.0", "ce-source": "test://bin", "ce-type": "ai.run.log",
            "content-type": "application/json"}
    data = json.dumps({"run_id": run_id, "level": "info", "message": "m"})
    for extra in ({"ce-sequence": "\u00b2".encode()}, {"ce-sequence": "9" * 5000},
                  {"ce-leaseepoch": "\u00b9".encode()},
                  {"ce-time": "0001-01-01T00:00:00+01:00"},
                  {"ce-time": "9999-12-31T23:59:59-01:00"}, {"ce-time": "yesterday"}):
        resp = httpx.post(f"{stack.control_plane_url}/api/ingest/event", content=data,
                          headers={**base, "ce-id": new_ulid(), **extra})
        assert resp.status_code == 422, (extra, resp.status_code, resp.text)
    ok = httpx.post(f"{stack.control_plane_url}/api/ingest/event", content=data,
                    headers={**base, "ce-id": new_ulid(), "ce-sequence": "5"})
    assert ok.status_code == 201, ok.text


def test_malformed_signature_headers_answer_401(stack: Stack) -> None:
    url = f"{stack.control_plane_url}/api/ingest/events"
    now = str(int(time.time()))
    cases = [("sha256=\u00e9".encode("latin-1"), now), ("sha256=" + "a" * 64, "9" * 5000),
             ("sha256=" + "a" * 64, "\u00b2".encode()), ("\u00ff".encode("latin-1") * 70, now),
             ("sha256=" + "a" * 5000, now), ("sha256=" + "a" * 64, "")]
    for signature, stamp in cases:
        resp = httpx.post(url, content=b"{}", headers={
            "content-type": "application/x-ndjson", "x-aisci-signature": signature,
            "x-aisci-timestamp": stamp})
        assert resp.status_code == 401, (signature, stamp, resp.status_code, resp.text)


def _rss_peak_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("VmHWM:")))


def test_a_128mb_body_with_a_bogus_signature_leaves_memory_flat(stack: Stack) -> None:
    """HMAC mode needs the body to check it: the body limit cuts it off while it streams,
    before the signature is even looked at. The server's peak RSS is what is measured."""
    launched = launch_control_plane(free_port(), stack.env, stack.tmp / "cp-rss.log")
    try:
        url = f"http://127.0.0.1:{launched.port}/api/ingest/events"
        before = _rss_peak_kb(launched.pid)
        stamp = str(int(time.time()))
        bogus = {"content-type": "application/x-ndjson", "x-aisci-timestamp": stamp,
                 "x-aisci-signature": "v2=" + "0" * 64}
        chunk = b"x" * (1024 * 1024)

        def streamed():  # no Content-Length: chunked, counted as it arrives
            for _ in range(128):
                yield chunk

        for content in (streamed(), chunk * 128):  # chunked, then a declared length
            try:
                resp = httpx.post(url, content=content, headers=bogus, timeout=60)
                assert resp.status_code == 413, resp.text
            except httpx.TransportError:
                pass  # the server answered 413 and closed while the client still sent
        assert httpx.get(f"http://127.0.0.1:{launched.port}/healthz").status_code == 200
        grown_mb = (_rss_peak_kb(launched.pid) - before) / 1024
        print(f"peak RSS of the control plane grew by {grown_mb:.1f} MB")
        assert grown_mb < 48, f"peak RSS grew by {grown_mb:.0f} MB for a refused body"
    finally:
        stop_pid(launched.pid)


def test_per_event_cap_in_binary_mode_and_batch_json(stack: Stack) -> None:
    run_id = submit_hypothesis(stack.db, title="cap", idea=example_idea()).run_id
    big = {"run_id": run_id, "level": "info", "message": "x" * (1024 * 1024 + 10)}
    resp = httpx.post(f"{stack.control_plane_url}/api/ingest/event", json=big, headers={
        **AUTH, "ce-specversion": "1.0", "ce-id": new_ulid(), "ce-source": "test://cap",
        "ce-type": "ai.run.log"})
    assert resp.status_code == 413, resp.text
    too_big = _log(run_id, data=big)
    resp = httpx.post(f"{stack.control_plane_url}/api/ingest/events",
                      content=json.dumps([too_big, _log(run_id, seq=3)]),
                      headers={**AUTH, "content-type": "application/cloudevents-batch+json"})
    assert resp.status_code == 202
    body = resp.json()
    assert body["accepted"] == 1 and body["invalid_lines"][0]["line"] == 1
    assert "larger than" in body["invalid_lines"][0]["reason"]


def test_a_failing_projection_is_isolated_to_its_event(stack: Stack) -> None:
    """A run document the projection cannot update (here: damaged by hand) fails only the
    events that touch the damage; they are stored, flagged, reported and counted."""
    bad_run = submit_hypothesis(stack.db, title="bad", idea=example_idea()).run_id
    good_run = submit_hypothesis(stack.db, title="good", idea=example_idea()).run_id
    stack.db.runs.update_one({"_id": bad_run}, {"$set": {"stageState": "damaged"}})

    def progress(run_id: str, seq: int, value: float) -> dict:
        return make_event("ai.run.stage_progress", {"run_id": run_id, "stage": "Stage_1",
                                                    "progress": value},
                          source="test://iso", seq=seq).to_json()

    batch = [progress(good_run, 2, 0.2), progress(bad_run, 2, 0.3), _log(bad_run, seq=3),
             progress(good_run, 3, 0.6)]
    body = post(stack, batch)
    assert body["accepted"] == 4
    assert [e["line"] for e in body["projection_errors"]] == [2]
    assert "stageState" in body["projection_errors"][0]["reason"]
    assert stack.db.runs.find_one({"_id": good_run})["stageState"]["Stage_1"]["progress"] == 0.6
    assert stack.db.runs.find_one({"_id": bad_run})["lastEventSeq"] == 3  # its log projected
    flagged = stack.db.events.find_one({"_id.id": batch[1]["id"]})
    assert "stageState" in flagged["projectionError"]
    metrics = httpx.get(f"{stack.control_plane_url}/metrics", headers=UI_AUTH).text
    assert "aisci_ingest_projection_errors_total 1.0" in metrics


def test_a_poison_event_does_not_stall_the_emitter(stack: Stack, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A line the control plane refuses for good goes to the dead-letter file; every event
    behind it is delivered and projected."""
    run_id = submit_hypothesis(stack.db, title="poison", idea=example_idea()).run_id
    spool = Spool(tmp_path / "spool")
    emitter = Emitter(HttpSink(stack.control_plane_url, API_KEY), source="test://poison",
                      spool=spool, batch_wait_s=0.05)
    poison = orjson.dumps({**_log(run_id, seq=2), "sequence": "\u00b2"}) + b"\n"
    emitter._pending.append((poison, None))  # as an older emitter's spool would hold it
    for i in range(1, 121):
        emitter.emit("ai.run.stage_progress", {"run_id": run_id, "stage": "Stage_1",
                                               "progress": i / 120}, seq=10 + i)
    assert emitter.flush(timeout_s=60)
    emitter.close()
    run = stack.db.runs.find_one({"_id": run_id})
    assert run["stageState"]["Stage_1"]["progress"] == 1.0 and run["lastEventSeq"] == 130
    assert stack.db.events.count_documents({"runId": run_id, "source": "test://poison"}) == 120
    dead = [orjson.loads(line) for line in (tmp_path / "spool" / DEAD_LETTER).read_bytes()
            .splitlines()]
    assert len(dead) == 1 and "sequence" in dead[0]["reason"]
    assert dead[0]["event"]["sequence"] == "\u00b2"
    assert emitter.refused == 1 and emitter.sent == 120
    assert "refused an event for good" in caplog.text


def test_healthz_answers_while_a_large_batch_is_parsed(stack: Stack) -> None:
    """Parsing and storing run off the event loop: health checks are answered meanwhile."""
    run_id = submit_hypothesis(stack.db, title="big", idea=example_idea()).run_id
    lines = [_log(run_id, seq=i + 2) for i in range(30_000)]
    body = "\n".join(json.dumps(e) for e in lines).encode()
    done = threading.Event()
    answered_during: list[int] = []

    def big() -> None:
        resp = httpx.post(f"{stack.control_plane_url}/api/ingest/events", content=body,
                          headers=NDJSON, timeout=300)
        assert resp.status_code == 202 and resp.json()["accepted"] == 30_000
        done.set()

    sender = threading.Thread(target=big)
    sender.start()
    while not done.is_set():
        code = httpx.get(f"{stack.control_plane_url}/healthz", timeout=60).status_code
        if not done.is_set():
            answered_during.append(code)
    sender.join()
    assert answered_during and set(answered_during) == {200}


def test_two_control_plane_processes_project_one_run_identically(stack: Stack) -> None:
    """Stateless control planes behind a load balancer: two processes ingest the same run
    at once, in interleaved shuffled batches, and the read model is the one a single
    process builds from the events in order."""
    idea = example_idea()
    reference = submit_hypothesis(stack.db, title="ref", idea=idea).run_id
    story = run_story(reference, "test://two")
    post(stack, story)
    expected = projected(stack, reference)
    second = launch_control_plane(free_port(), stack.env, stack.tmp / "cp-two.log")
    try:
        urls = [stack.control_plane_url, f"http://127.0.0.1:{second.port}"]
        for seed in range(2):
            run_id = submit_hypothesis(stack.db, title="two", idea=idea).run_id
            events = [{**e, "id": new_ulid(), "subject": f"run/{run_id}",
                       "data": {**e["data"], "run_id": run_id} | (
                           {"key": e["data"]["key"].replace(reference, run_id)}
                           if "key" in e["data"] else {})} for e in story]
            random.Random(seed).shuffle(events)
            batches = [events[i:i + 3] for i in range(0, len(events), 3)]

            def send(k: int, batches=batches) -> None:
                for batch in batches[k::2]:
                    body = "\n".join(json.dumps(e) for e in batch).encode()
                    resp = httpx.post(f"{urls[k]}/api/ingest/events", content=body,
                                      headers=NDJSON, timeout=30)
                    assert resp.status_code == 202 and not resp.json()["projection_errors"]

            with ThreadPoolExecutor(2) as pool:
                list(pool.map(send, [0, 1]))
            got = projected(stack, run_id)
            for part in expected:
                assert got[part] == expected[part], f"seed {seed}: {part}"
    finally:
        stop_pid(second.pid)


def test_workers_run_several_server_processes_on_one_port(stack: Stack) -> None:
    """`aisci control-plane --workers 2`: two processes (each its own app, built by the
    factory) answer on one port, and batches sent over many connections all land."""
    server = launch_control_plane(free_port(), stack.env, stack.tmp / "cp-workers.log",
                                  workers=2)
    try:
        url = f"http://127.0.0.1:{server.port}"
        children = psutil.Process(server.pid).children(recursive=True)
        servers = [c for c in children if "multiprocessing" in " ".join(c.cmdline())
                   and "resource_tracker" not in " ".join(c.cmdline())]
        assert len(servers) == 2, [c.cmdline() for c in children]
        run_id = submit_hypothesis(stack.db, title="workers", idea=example_idea()).run_id
        lines = [_log(run_id, seq=n) for n in range(1, 61)]

        def send(k: int) -> int:
            body = "\n".join(json.dumps(e) for e in lines[k::6]).encode()
            with httpx.Client(timeout=30) as client:  # a connection of its own
                resp = client.post(f"{url}/api/ingest/events", content=body, headers=NDJSON)
            assert resp.status_code == 202, resp.text
            return resp.json()["accepted"]

        with ThreadPoolExecutor(6) as pool:
            assert sum(pool.map(send, range(6))) == 60
        assert stack.db.events.count_documents({"runId": run_id, "type": "ai.run.log"}) == 60
        assert stack.db.runs.find_one({"_id": run_id})["lastEventSeq"] == 60
    finally:
        stop_pid(server.pid)
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in servers)


def test_an_integer_beyond_64_bits_is_refused_by_line(stack: Stack) -> None:
    """orjson reads 2**63 as an int that BSON cannot store: the line is refused, the rest of
    the batch is stored (the check runs only when encoding the batch fails)."""
    run_id = submit_hypothesis(stack.db, title="big int", idea=example_idea()).run_id
    huge = _log(run_id, seq=3)
    huge["data"]["kv"] = {"n": 2**63}
    body = post(stack, [_log(run_id, seq=2), huge, _log(run_id, seq=4)])
    assert (body["accepted"], body["invalid"]) == (2, 1)
    assert body["invalid_lines"][0]["line"] == 2
    assert "64-bit" in body["invalid_lines"][0]["reason"]
    one = httpx.post(f"{stack.control_plane_url}/api/ingest/event",
                     json={**huge, "id": new_ulid()}, headers=AUTH)
    assert one.status_code == 422 and "64-bit" in one.json()["detail"]
