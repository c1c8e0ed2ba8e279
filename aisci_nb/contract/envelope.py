"""CloudEvents 1.0 envelopes: build one for sending, parse one received in any accepted form.

One normalised `Event` comes out of every form the ingest accepts (structured JSON, binary
mode `ce-*` headers, the older nested `extensions.seq`), so the projection sees one shape.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from ..errors import InvalidEvent
from .catalog import CATALOG, check_data, validate_data

MAX_DEPTH = 32
INT64 = 2**63 - 1
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
_REQUIRED = ("specversion", "id", "source", "type")


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # every 10-bit group as 2 digits


def new_ulid(now_ns: int | None = None) -> str:
    """A ULID string: 48-bit milliseconds + 80 random bits, Crockford base32.

    `str(ulid.ULID())` encodes digit by digit in Python; ten bits at a time through a table
    is several times cheaper, which keeps `emit()` cheap. Tests check it against python-ulid.
    """
    ms = (now_ns if now_ns is not None else time.time_ns()) // 1_000_000
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    # 130 bits (two leading zeros) = 13 groups of ten bits = 26 digits.
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in range(120, -10, -10)])


@dataclass(frozen=True)
class Event:
    id: str
    source: str
    type: str
    subject: str
    time: datetime
    data: dict[str, Any]
    seq: int | None = None
    traceparent: str | None = None
    epoch: int | None = None  # the sender's lease epoch: the top-level extension `leaseepoch`

    @property
    def run_id(self) -> str | None:
        return self.data.get("run_id")

    def _fields(self, time: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "time": time,
            "datacontenttype": "application/json",
            "data": self.data,
        }
        if self.seq is not None:
            out["sequence"] = self.seq
        if self.traceparent:
            out["traceparent"] = self.traceparent
        if self.epoch is not None:
            out["leaseepoch"] = self.epoch
        return out

    def to_json(self) -> dict[str, Any]:
        """The structured-mode JSON form, with the per-run order as top-level `sequence`."""
        return self._fields(self.time.isoformat().replace("+00:00", "Z"))

    def to_line(self) -> bytes:
        """One NDJSON line, as the emitter spools and sends it."""
        return orjson.dumps(self._fields(self.time), default=_plain, option=orjson.OPT_UTC_Z
                            | orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)


def _plain(value: Any) -> Any:
    """numpy and torch scalars (what notebooks report most) as plain Python numbers."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def subject_for(event_type: str, data: dict[str, Any]) -> str:
    spec = CATALOG[event_type]
    if spec.subject == "hypothesis":
        return f"hypothesis/{data['hypothesis_id']}"
    return f"run/{data['run_id']}"


def make_event(
    event_type: str,
    data: dict[str, Any],
    *,
    source: str,
    seq: int | None = None,
    traceparent: str | None = None,
    epoch: int | None = None,
) -> Event:
    """A new event with a fresh ULID and the current UTC time; `data` is checked as is."""
    try:
        check_data(event_type, data)
    except ValueError as exc:
        raise InvalidEvent(str(exc)) from None
    now_ns = time.time_ns()
    return Event(
        id=new_ulid(now_ns),
        source=source,
        type=event_type,
        subject=subject_for(event_type, data),
        time=datetime.fromtimestamp(now_ns / 1e9, UTC),
        data={k: v for k, v in data.items() if v is not None},
        seq=seq,
        traceparent=traceparent,
        epoch=epoch,
    )


def _parse_time(value: Any) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if not isinstance(value, str):
        raise InvalidEvent("time: must be an RFC 3339 string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEvent(f"time: not RFC 3339: {value!r}") from None
    if parsed.tzinfo is None:
        raise InvalidEvent("time: needs a timezone offset (RFC 3339)")
    return parsed.astimezone(UTC)


def check_storable(value: Any, where: str = "data", depth: int = 0) -> None:
    """Refuse what MongoDB cannot store or would read as an operator, naming the place."""
    if depth > MAX_DEPTH:
        raise InvalidEvent(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or key.startswith("$") or "\x00" in key:
                raise InvalidEvent(f"{where}: field name {key!r} may not start with '$' "
                                   "or contain NUL")
            check_storable(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_storable(item, f"{where}[{i}]", depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT64:
        raise InvalidEvent(f"{where}: integer out of the 64-bit range")


def _parse_seq(obj: dict[str, Any]) -> int | None:
    raw = obj.get("sequence")
    if raw is None and isinstance(obj.get("extensions"), dict):
        raw = obj["extensions"].get("seq")
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise InvalidEvent("sequence: must be a non-negative integer")
    if isinstance(raw, str) and raw.isdigit():
        raw = int(raw)
    if not isinstance(raw, int) or not 0 <= raw <= INT64:
        raise InvalidEvent("sequence: must be a non-negative 64-bit integer")
    return raw


def _parse_epoch(obj: dict[str, Any]) -> int | None:
    raw = obj.get("leaseepoch")
    if isinstance(raw, str) and raw.isdigit():  # binary mode: every attribute is a string
        raw = int(raw)
    if raw is None or (isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= INT64):
        return raw
    raise InvalidEvent("leaseepoch: must be a non-negative 64-bit integer")


def parse_event(obj: Any) -> Event:
    """Validate one structured-mode event (a decoded JSON object) into an `Event`."""
    if not isinstance(obj, dict):
        raise InvalidEvent("an event must be a JSON object")
    for name in _REQUIRED:
        value = obj.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidEvent(f"{name}: required, a non-empty string")
    if obj["specversion"] != "1.0":
        raise InvalidEvent(f"specversion: {obj['specversion']!r} is not supported, use '1.0'")
    ctype = obj.get("datacontenttype")
    if ctype is not None and not str(ctype).startswith("application/json"):
        raise InvalidEvent("datacontenttype: only application/json data is accepted")
    event_type = obj["type"]
    try:
        data = validate_data(event_type, obj.get("data"))
    except ValueError as exc:
        raise InvalidEvent(str(exc)) from None
    check_storable(data)
    expected_subject = subject_for(event_type, data)
    subject = obj.get("subject") or expected_subject
    if subject != expected_subject:
        raise InvalidEvent(f"subject: {subject!r} does not match data ({expected_subject!r})")
    traceparent = obj.get("traceparent")
    if traceparent is not None and not _TRACEPARENT.match(str(traceparent)):
        raise InvalidEvent("traceparent: not a W3C trace context header")
    return Event(
        id=obj["id"],
        source=obj["source"],
        type=event_type,
        subject=subject,
        time=_parse_time(obj.get("time")),
        data=data,
        seq=_parse_seq(obj),
        traceparent=traceparent,
        epoch=_parse_epoch(obj),
    )


def parse_binary(headers: dict[str, str], body: bytes) -> Event:
    """Binary content mode: attributes in `ce-*` headers, the body is the data."""
    attrs: dict[str, Any] = {
        k.lower().removeprefix("ce-"): v for k, v in headers.items() if k.lower().startswith("ce-")
    }
    if "traceparent" in {k.lower() for k in headers}:
        attrs.setdefault("traceparent", {k.lower(): v for k, v in headers.items()}["traceparent"])
    attrs["datacontenttype"] = headers.get("content-type", "application/json").split(";")[0]
    try:
        attrs["data"] = orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"body: not JSON ({exc})") from None
    return parse_event(attrs)
