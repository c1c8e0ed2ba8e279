"""Every event type of the catalogue, through the official CloudEvents SDK and back.

The emitter writes NDJSON by hand (orjson, the hot path) and the ingest reads NDJSON by
hand; binary mode, single structured events and batches are read through the SDK. These
tests prove the two agree: what we write the SDK reads with the same attributes and data,
what the SDK writes (structured, binary, batch) our ingest reads into the same event.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import orjson
import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from aisci_nb.contract import cesdk
from aisci_nb.contract.catalog import CATALOG
from aisci_nb.contract.envelope import Event, make_event, parse_event
from aisci_nb.control_plane.ingest import BATCH, split_batch

RUN = {"run_id": "run-1"}
STAGE = {**RUN, "stage": "Stage_1"}
NODE = {**STAGE, "node_id": "n1", "parent_id": "n0", "is_buggy": False, "metric": 0.25}
CELL = {**STAGE, "cell_index": 3, "cell_id": "c3", "label": "train"}
SAMPLES: dict[str, dict] = {
    "ai.run.enqueued": {**RUN, "hypothesis_id": "h1", "priority": 2},
    "ai.run.started": {**RUN, "pod_id": "pod-1", "gpu": "H200", "region": "eu"},
    "ai.run.heartbeat": {**RUN, "gpu_util": 50.5, "mem_gb": 10.0, "temp_c": 60.0},
    "ai.run.status_changed": {**RUN, "from": "RUNNING", "to": "QUEUED", "reason": "lease"},
    "ai.run.completed": {**RUN, "total_duration_s": 12.5},
    "ai.run.failed": {**RUN, "stage": "Stage_1", "code": "CELL_ERROR", "message": "boom",
                      "traceback": "tb", "retryable": False},
    "ai.run.canceled": {**RUN, "by": "alice", "reason": "enough"},
    "ai.run.stage_started": {**STAGE, "desc": "first"},
    "ai.run.stage_progress": {**STAGE, "progress": 0.5, "iteration": 3, "max_iterations": 6,
                              "good_nodes": 2, "buggy_nodes": 1, "best_metric": 0.1},
    "ai.run.stage_metric": {**STAGE, "name": "val/loss é", "value": 0.125},
    "ai.run.stage_completed": {**STAGE, "duration_s": 3.0, "summary": {"best": 0.5}},
    "ai.run.cell_started": CELL,
    "ai.run.cell_completed": {**CELL, "duration_s": 1.5, "execution_count": 4},
    "ai.run.cell_failed": {**CELL, "duration_s": 1.5, "code": "CELL_ERROR", "message": "x"},
    "ai.node.created": NODE,
    "ai.node.code_generated": {**NODE, "code_size_bytes": 1234},
    "ai.node.executing": NODE,
    "ai.node.completed": {**NODE, "exec_time_s": 2.5},
    "ai.node.selected_best": NODE,
    "ai.ideation.generated": {"hypothesis_id": "h1", "request_id": "q1", "count": 3,
                              "top_k": 2},
    "ai.paper.started": RUN,
    "ai.paper.generated": {**RUN, "artifact_key": "runs/run-1/paper.pdf", "word_count": 9},
    "ai.validation.auto_started": {**RUN, "model": "reviewer", "rubric_version": "v1"},
    "ai.validation.auto_completed": {**RUN, "verdict": "pass", "scores": {"novelty": 3.0},
                                     "notes": "fine"},
    "ai.artifact.registered": {**RUN, "key": "runs/run-1/a.json", "bytes": 10,
                               "sha256": "a" * 64, "content_type": "application/json",
                               "kind": "data"},
    "ai.artifact.failed": {**RUN, "key": "runs/run-1/a.json", "code": "UPLOAD", "message": "x"},
    "ai.llm.usage": {**RUN, "model": "m", "provider": "scripted", "step": "Stage_1",
                     "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.01},
    "ai.run.log": {**RUN, "level": "info", "message": "hello \u2603", "kv": {"a": [1, 2]}},
}
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_samples_cover_the_whole_catalogue() -> None:
    assert set(SAMPLES) == set(CATALOG)


def ours(event_type: str) -> Event:
    return make_event(event_type, SAMPLES[event_type], source="pod://sdk-test/1", seq=42,
                      traceparent=TRACE, epoch=3)


def same(a: Event, b: Event) -> None:
    """Identical attributes and data (time to the microsecond)."""
    for name in ("id", "source", "type", "subject", "time", "data", "seq", "traceparent",
                 "epoch"):
        assert getattr(a, name) == getattr(b, name), name


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_our_wire_is_read_by_the_sdk(event_type: str) -> None:
    """What the emitter writes (one NDJSON line) is a valid structured event for the SDK."""
    event = ours(event_type)
    ce = JSONFormat().read(CloudEvent, event.to_line())
    attrs = ce.get_attributes()
    assert attrs["id"] == event.id and attrs["source"] == event.source
    assert attrs["type"] == event_type and attrs["subject"] == event.subject
    assert attrs["specversion"] == "1.0"
    assert attrs["datacontenttype"] == "application/json"
    assert attrs["time"] == event.time and attrs["time"].tzinfo is not None
    assert (attrs["sequence"], attrs["leaseepoch"], attrs["traceparent"]) == (42, 3, TRACE)
    assert ce.get_data() == event.data
    # And it reads back through our hand-written fast path unchanged.
    line = event.to_line()
    same(parse_event(orjson.loads(line), line), event)


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_sdk_structured_is_read_by_us(event_type: str) -> None:
    event = ours(event_type)
    body = cesdk.sdk_structured(event)
    same(cesdk.parse_structured(body), event)
    same(parse_event(json.loads(body)), event)  # the NDJSON path too
    # Both writers put the same attributes and data on the wire.
    assert json.loads(body) == json.loads(event.to_line())


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_sdk_binary_is_read_by_us(event_type: str) -> None:
    event = ours(event_type)
    message = cesdk.sdk_binary(event)
    assert message.headers["ce-id"] == event.id
    assert message.headers["content-type"] == "application/json"
    same(cesdk.parse_binary(dict(message.headers), message.body), event)
    # And the SDK reads its own message to the same attributes we read.
    ce = from_binary(HTTPMessage(message.headers, message.body), JSONFormat(), CloudEvent)
    assert ce.get_data() == event.data and ce.get_attributes()["time"] == event.time


def test_sdk_batch_of_every_type_is_read_by_us() -> None:
    events = [ours(t) for t in sorted(SAMPLES)]
    parsed = split_batch(BATCH, cesdk.sdk_batch(events))
    assert [n for n, _ in parsed] == list(range(1, len(events) + 1))
    for (_, got), want in zip(parsed, events, strict=True):
        assert isinstance(got, Event), got
        same(got, want)


def test_binary_mode_percent_encoding_and_time_as_the_sdk_decodes_them() -> None:
    """Header values are percent-decoded (spec 3.1.3.2), as only the SDK did before."""
    event = make_event("ai.run.log", {"run_id": "r 1", "level": "info", "message": "m"},
                       source="pod://with space/é", seq=1)
    message = cesdk.sdk_binary(event)
    assert "%20" in message.headers["ce-source"]
    got = cesdk.parse_binary(dict(message.headers), message.body)
    assert got.source == "pod://with space/é" and got.subject == "run/r 1"
    assert got.time == event.time.astimezone(UTC) and isinstance(got.time, datetime)
