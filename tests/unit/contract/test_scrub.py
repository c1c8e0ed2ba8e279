"""The scrubber: each secret and its common encodings become a marker (no services)."""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import quote, quote_plus

from aisci_nb.contract.scrub import MARKER, Scrubber, from_env, install_log_scrubber

CANARY = "sk-canary/+=&Key\"42-" + "z" * 12


def test_every_encoding_of_a_secret_is_replaced() -> None:
    s = Scrubber([CANARY, None, ""])
    raw = CANARY.encode()
    forms = [CANARY, quote(CANARY, safe=""), quote_plus(CANARY), raw.hex(), raw.hex().upper(),
             json.dumps(CANARY)[1:-1], base64.b64encode(raw).decode(),
             base64.urlsafe_b64encode(raw).decode()]
    for prefix in ("", "a", "ab"):  # base64 of the secret inside a larger value
        forms.append(base64.b64encode(prefix.encode() + raw + b" tail").decode())
    for form in forms:
        out = s.text(f"before {form} after")
        assert MARKER in out, form
        assert CANARY not in out and form not in out, form
    assert s.text("nothing secret here") == "nothing secret here"


def test_objects_bytes_and_late_additions() -> None:
    s = Scrubber([CANARY])
    data = {"message": f"key={CANARY}", "nested": [{CANARY: 1}], "n": 3}
    assert CANARY not in json.dumps(s.obj(data)) and s.obj(data)["n"] == 3
    assert CANARY.encode() not in s.bytes(b"\xff\xfe" + CANARY.encode())
    s.add("aisci-run.v1.late-token")
    assert "late-token" not in s.text("token aisci-run.v1.late-token")
    assert not Scrubber(["short"])  # too short to scrub safely: ordinary text stays


def test_log_records_and_tracebacks_are_scrubbed(tmp_path) -> None:
    logger = logging.getLogger("aisci.test.scrub")
    handler = logging.FileHandler(tmp_path / "log.txt")
    logger.addHandler(handler)
    logger.propagate = False
    install_log_scrubber(Scrubber([CANARY]), logger)
    try:
        logger.error("upload failed with %s", CANARY)
        try:
            raise ValueError(f"bad key {CANARY}")
        except ValueError:
            logger.exception("boom")
    finally:
        handler.close()
        logger.removeHandler(handler)
    text = (tmp_path / "log.txt").read_text()
    assert CANARY not in text and text.count(MARKER) == 2 and "ValueError" in text


def test_from_env_reads_the_secret_variables() -> None:
    env = {"OPENAI_API_KEY": CANARY, "INGEST_API_KEYS": "first-key-123, second-key-456",
           "HOME": "/root"}
    s = from_env(env)
    assert s.text(f"{CANARY} first-key-123 second-key-456 /root") == \
        f"{MARKER} {MARKER} {MARKER} /root"
