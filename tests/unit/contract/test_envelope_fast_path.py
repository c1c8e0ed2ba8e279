"""The ingest's straight path for well-formed events refuses exactly what the checked path does.

`parse_event` skips work for the common case (attributes checked in one expression, the
`$`/NUL search done once per batch body); these tests send the cases that must still fall
through to the careful checks, inside batches whose other lines are plain.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from aisci_nb.contract.envelope import InvalidEvent, make_event, parse_event
from aisci_nb.control_plane.ingest import split_batch

NDJSON = "application/x-ndjson"


def _event(**data) -> dict:
    return make_event("ai.run.log", {"run_id": "r1", "level": "info", "message": "m", **data},
                      source="test://fast", seq=1).to_json()


def _batch(*events: dict | bytes) -> list[tuple[int, object]]:
    lines = [e if isinstance(e, bytes) else orjson.dumps(e) for e in events]
    return split_batch(NDJSON, b"\n".join(lines))


def _reasons(parsed: list[tuple[int, object]]) -> dict[int, str]:
    return {n: str(p) for n, p in parsed if isinstance(p, InvalidEvent)}


def test_a_dollar_key_is_refused_among_plain_lines() -> None:
    bad = _event()
    bad["data"]["$where"] = "1"
    reasons = _reasons(_batch(_event(), bad, _event()))
    assert list(reasons) == [2]
    assert "'$where'" in reasons[2]


def test_an_escaped_dollar_or_nul_in_a_key_is_refused() -> None:
    escaped = orjson.dumps(_event()).replace(b'"message":', b'"\\u0024x":1,"message":')
    nul = orjson.dumps(_event()).replace(b'"message":', b'"a\\u0000b":1,"message":')
    reasons = _reasons(_batch(_event(), escaped, nul))
    assert sorted(reasons) == [2, 3]
    assert all("may not start with '$' or contain NUL" in r for r in reasons.values())


def test_deep_nesting_is_refused_on_its_line_only() -> None:
    deep: object = 1
    for _ in range(40):
        deep = {"a": deep}
    reasons = _reasons(_batch(_event(), _event(detail=deep)))
    assert list(reasons) == [2]
    assert "nested deeper than" in reasons[2]


@pytest.mark.parametrize(("change", "wording"), [
    ({"specversion": "0.3"}, "specversion"),
    ({"id": ""}, "id: required"),
    ({"source": "s" * 1025}, "source: required"),
    ({"type": 7}, "type: required"),
    ({"datacontenttype": "text/plain"}, "datacontenttype"),
    ({"subject": "run/other"}, "subject"),
    ({"traceparent": "nope"}, "traceparent"),
    ({"sequence": -1}, "sequence"),
    ({"leaseepoch": "x"}, "leaseepoch"),
    ({"time": "2026-11-30T01:00:00"}, "timezone"),
])
def test_each_attribute_problem_is_worded(change: dict, wording: str) -> None:
    with pytest.raises(InvalidEvent, match=wording):
        parse_event({**_event(), **change})


def test_times_in_any_offset_are_the_same_instant_in_utc() -> None:
    instant = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    for sent in ("2026-11-30T01:00:00Z", "2026-11-30T01:00:00+00:00",
                 "2026-11-30T03:00:00+02:00"):
        parsed = parse_event({**_event(), "time": sent}).time
        assert parsed == instant and parsed.tzinfo is UTC


def test_sequence_and_epoch_as_digit_strings_and_the_nested_form() -> None:
    plain = parse_event({**_event(), "sequence": "12", "leaseepoch": "3"})
    assert (plain.seq, plain.epoch) == (12, 3)
    nested = {k: v for k, v in _event().items() if k != "sequence"}
    assert parse_event({**nested, "extensions": {"seq": 5}}).seq == 5
