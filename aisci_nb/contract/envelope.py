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
from .catalog import CATALOG, check_data
from .tolerant import read_data

MAX_DEPTH = 32
INT64 = 2**63 - 1
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
_REQUIRED = ("specversion", "id", "source", "type")
_DIGITS = re.compile(r"^[0-9]{1,19}$")
MAX_ATTRIBUTE = 1024  # characters of an id, source, type or subject


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


@dataclass(slots=True)  # not frozen: a frozen init costs a setattr call per field
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
    # The tolerant reader's notes: (field, reason) for each data field kept but not used.
    warnings: tuple[tuple[str, str], ...] = ()
    sent_data: dict[str, Any] | None = None  # `data` exactly as sent, when it was not usable as is

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


_BY_HYPOTHESIS = frozenset(t for t, spec in CATALOG.items() if spec.subject == "hypothesis")


def subject_for(event_type: str, data: dict[str, Any]) -> str:
    if event_type in _BY_HYPOTHESIS:
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
    if isinstance(value, datetime):  # already read by the CloudEvents SDK
        if value.tzinfo is None:
            raise InvalidEvent("time: needs a timezone offset (RFC 3339)")
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise InvalidEvent("time: out of range in UTC") from None
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidEvent("time: must be an RFC 3339 string")
    try:
        parsed = datetime.fromisoformat(value)  # Python 3.11 reads RFC 3339, `Z` included
    except ValueError:
        raise InvalidEvent(f"time: not RFC 3339: {value[:40]!r}") from None
    if parsed.tzinfo is UTC:  # what our emitter sends: nothing to convert
        return parsed
    if parsed.tzinfo is None:
        raise InvalidEvent("time: needs a timezone offset (RFC 3339)")
    try:  # year 1 minus an hour, or 9999 plus one, is outside what datetime can hold
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidEvent(f"time: {value!r} is out of range in UTC") from None


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


def _uint64(name: str, raw: Any) -> int | None:
    """A non-negative 64-bit integer, or a string of ASCII digits holding one (binary mode
    sends every attribute as a string). `str.isdigit` would let "²" through to `int()`."""
    if raw is None:
        return None
    if isinstance(raw, str) and _DIGITS.match(raw):
        raw = int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= INT64:
        return raw
    raise InvalidEvent(f"{name}: must be a non-negative 64-bit integer")


def _parse_seq(obj: dict[str, Any]) -> int | None:
    raw = obj.get("sequence")
    if type(raw) is int and 0 <= raw <= INT64:  # the common case, without a call
        return raw
    if raw is None and isinstance(obj.get("extensions"), dict):
        raw = obj["extensions"].get("seq")  # the replaced system's nested form
    return _uint64("sequence", raw)


def _parse_epoch(obj: dict[str, Any]) -> int | None:
    raw = obj.get("leaseepoch")
    if raw is None or (type(raw) is int and 0 <= raw <= INT64):
        return raw
    return _uint64("leaseepoch", raw)


def check_required(obj: Any) -> None:
    """The required context attributes, worded for the sender (before the SDK's checks)."""
    if not isinstance(obj, dict):
        raise InvalidEvent("an event must be a JSON object")
    get = obj.get
    event_id, source, event_type = get("id"), get("source"), get("type")
    if (get("specversion") == "1.0" and type(event_id) is str and type(source) is str
            and type(event_type) is str and 0 < len(event_id) <= MAX_ATTRIBUTE
            and 0 < len(source) <= MAX_ATTRIBUTE and 0 < len(event_type) <= MAX_ATTRIBUTE):
        return  # the common case in one expression; the loop below words what is wrong
    for name in _REQUIRED:
        value = obj.get(name)
        if not isinstance(value, str) or not value or len(value) > MAX_ATTRIBUTE:
            raise InvalidEvent(f"{name}: required, a non-empty string of at most "
                               f"{MAX_ATTRIBUTE} characters")
    if obj["specversion"] != "1.0":
        raise InvalidEvent(f"specversion: {obj['specversion'][:20]!r} is not supported, "
                           "use '1.0'")


def plain_json(raw: bytes, searched: bool = False) -> bool:
    """True when a JSON text cannot hold what `check_storable` refuses, so the walk over
    the decoded value can be skipped: no key can start with `$` (or its escape), none
    holds NUL, and there are too few brackets to nest deep. An integer beyond 64 bits is
    left to BSON, which refuses it when the batch is encoded (`eventlog.insert_events`).
    `searched`: the text this one is part of (a batch body) has no `"$` and no `\\u0`."""
    return (raw.count(b"{") + raw.count(b"[") <= MAX_DEPTH
            and (searched or not has_key_hazard(raw)))


def has_key_hazard(text: bytes) -> bool:
    """Whether a JSON text may hold a `$`-key or an escaped NUL or `$` (`\\u0...`).

    A single-byte search (memchr) comes first: `$` and backslashes are rare in events,
    while a two-byte search for `"$` stumbles on every quote."""
    return (b"$" in text and b'"$' in text) or (b"\\" in text and b"\\u0" in text)


def parse_event(obj: Any, raw: bytes | None = None, *, searched: bool = False) -> Event:
    """Validate one structured-mode event (a decoded JSON object) into an `Event`.

    `raw` is the JSON text it was decoded from, when there is one (see `plain_json`). The
    common case (a well-formed event as our emitter writes it) takes the straight path: this
    runs once per event of every batch, so each check is as cheap as Python allows.
    """
    check_required(obj)
    get = obj.get
    event_type = obj["type"]
    ctype = get("datacontenttype")
    if ctype is not None and ctype != "application/json" \
            and not str(ctype).startswith("application/json"):
        raise InvalidEvent("datacontenttype: only application/json data is accepted")
    sent = get("data")
    if raw is None or not plain_json(raw, searched):
        check_storable(sent)
    try:
        read = read_data(event_type, sent)
    except ValueError as exc:
        raise InvalidEvent(str(exc)) from None
    data = read.data
    expected_subject = subject_for(event_type, data)
    subject = get("subject") or expected_subject
    if subject != expected_subject:
        raise InvalidEvent(f"subject: {str(subject)[:200]!r} does not match data "
                           f"({expected_subject!r})")
    traceparent = get("traceparent")
    if traceparent is not None and not (isinstance(traceparent, str)
                                        and _TRACEPARENT.match(traceparent)):
        raise InvalidEvent("traceparent: not a W3C trace context header")
    warnings = read.warnings
    return Event(obj["id"], obj["source"], event_type, subject, _parse_time(get("time")),
                 data, _parse_seq(obj), traceparent, _parse_epoch(obj), warnings,
                 sent if warnings else None)
