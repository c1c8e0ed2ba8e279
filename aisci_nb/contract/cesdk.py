"""The official CloudEvents SDK (`cloudevents.core`, v2) at the edges of the wire.

Binary-mode requests, single structured events and `cloudevents-batch+json` items are read
through the SDK, so what it accepts and how it decodes headers (percent-encoding, `time`)
is what the spec's reference implementation does. The NDJSON hot path (and the emitter's
writer) stays hand-written with orjson because the SDK's stdlib-json round trip costs more
than the rest of the ingest (see `bench/bench_ingest.py`); `tests/test_cloudevents_sdk.py`
round-trips every catalogue type through the SDK in structured, binary and batch form to
prove both sides agree on attributes and wire.
"""

from __future__ import annotations

from typing import Any

import orjson
from cloudevents.core.bindings.http import HTTPMessage, from_binary, to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from .envelope import Event, InvalidEvent, check_required, parse_event

FORMAT = JSONFormat()
# Header values are at most this long: a 5,000-digit `ce-sequence` is refused unparsed.
MAX_HEADER_VALUE = 1024


def _attributes(event: CloudEvent) -> dict[str, Any]:
    out = dict(event.get_attributes())
    out["data"] = event.get_data()
    return out


def _sdk(build, *args: Any) -> CloudEvent:
    """Run an SDK reader; its validation errors (any exception type) become InvalidEvent."""
    try:
        return build(*args)
    except InvalidEvent:
        raise
    except Exception as exc:  # the SDK raises ValueError, its own errors, dateutil's, ...
        reason = str(exc).replace("\n", " ")[:300] or type(exc).__name__
        raise InvalidEvent(f"not a valid CloudEvent: {reason}") from None


def parse_binary(headers: dict[str, str], body: bytes) -> Event:
    """Binary content mode: `ce-*` headers are the attributes, the body is the data."""
    picked: dict[str, str] = {}
    for name, value in headers.items():
        low = name.lower()
        if low.startswith("ce-") or low in ("content-type", "traceparent"):
            if len(value) > MAX_HEADER_VALUE:
                raise InvalidEvent(f"{low}: header longer than {MAX_HEADER_VALUE} characters")
            picked["ce-traceparent" if low == "traceparent" else low] = value
    picked.setdefault("content-type", "application/json")
    check_required({k.removeprefix("ce-"): v for k, v in picked.items()})
    if not body:
        raise InvalidEvent("body: the event's data is required")
    ce = _sdk(from_binary, HTTPMessage(picked, body), FORMAT, CloudEvent)
    return parse_event(_attributes(ce))


def parse_structured(body: bytes) -> Event:
    """One event in structured content mode (`application/cloudevents+json`)."""
    try:
        check_required(orjson.loads(body))
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not JSON ({exc})") from None
    return parse_event(_attributes(_sdk(FORMAT.read, CloudEvent, body)))


def parse_batch_item(item: Any, max_bytes: int) -> Event:
    """One element of a `cloudevents-batch+json` array, read by the SDK's JSON format.

    Serialising the element again is also how its size is measured against the per-event
    cap, which a batch must honour like every other form.
    """
    if not isinstance(item, dict):
        raise InvalidEvent("an event must be a JSON object")
    raw = orjson.dumps(item)
    if len(raw) > max_bytes:
        raise InvalidEvent(f"event larger than {max_bytes} bytes")
    return parse_structured(raw)


def to_sdk(event: Event) -> CloudEvent:
    """Our event as the SDK's CloudEvent (the same attributes, `time` as a datetime)."""
    attrs = {k: v for k, v in event.to_json().items() if k != "data"}
    attrs["time"] = event.time
    return CloudEvent(attrs, event.data)


def sdk_structured(event: Event) -> bytes:
    return to_structured(to_sdk(event), FORMAT).body


def sdk_binary(event: Event) -> HTTPMessage:
    return to_binary(to_sdk(event), FORMAT)


def sdk_batch(events: list[Event]) -> bytes:
    """A `cloudevents-batch+json` body: a JSON array of the SDK's structured events."""
    return b"[" + b",".join(sdk_structured(e) for e in events) + b"]"
