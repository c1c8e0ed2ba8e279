"""What a step's kernel gets from the worker besides its parameters, through its environment
(so nothing lands in an executed notebook): a run-scoped token and an artifact outbox.

Never the worker's key, the store's secret or the database: code written by an LLM runs in
that kernel. LLM keys stay (notebooks call the models); every output is scrubbed of them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pymongo.uri_parser import parse_uri

from ..contract import runtoken
from ..contract.runinfo import RUN_TOKEN_ENV
from ..settings import Settings
from ..storage.outbox import OUTBOX_ENV

KERNEL_DROPPED_ENV = frozenset({
    "AISCI_API_KEY", "AISCI_RUN_TOKEN", "INGEST_API_KEYS", "AISCI_INGEST_AUTH", "MONGODB_URL",
    "MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "AISCI_UI_TOKEN", "METRICS_TOKEN", "AISCI_NEW_PASSWORD"})


def secret_values(s: Settings) -> list[str]:
    """The credentials this worker knows; refused in parameters, scrubbed from every output."""
    found = [s.aisci_api_key, s.minio_secret_key, s.openai_api_key, s.anthropic_api_key,
             s.aisci_ui_token, s.metrics_token, *s.ingest_api_keys]
    values = [v.get_secret_value() for v in found if v and v.get_secret_value()]
    with contextlib.suppress(Exception):  # the database password, if the URL has one
        password = parse_uri(s.mongodb_url).get("password")
        if password:
            values.append(password)
    return values


def run_token(s: Settings, run_id: str, epoch: int) -> str | None:
    """The kernel's credential: good for this run and lease epoch only, until it expires."""
    if s.aisci_api_key is None:
        return None
    return runtoken.mint(s.aisci_api_key.get_secret_value(), run_id, epoch, s.run_token_ttl_s)


def kernel_env(s: Settings, token: str | None = None, outbox: Path | None = None
               ) -> dict[str, str]:
    """The worker's environment without its credentials, plus the run token and outbox."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in KERNEL_DROPPED_ENV}
    if token:
        env[RUN_TOKEN_ENV] = token
    if outbox is not None:
        env[OUTBOX_ENV] = str(outbox)
    return env


class KernelSpoolSink:
    """Re-sends what a dead kernel left in its spool, each line under a run token for that
    line's own run and lease epoch: never under the worker's key, since the kernel (code we
    do not trust) wrote those lines. A line of another run is refused by the ingest."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def send(self, lines: list[bytes]) -> None:
        import orjson

        from ..events.emitter import HttpSink

        groups: dict[tuple[str, int], list[bytes]] = {}
        for line in lines:
            try:
                event = orjson.loads(line)
                key = (str(event["data"]["run_id"]), int(event.get("leaseepoch") or 0))
            except (ValueError, KeyError, TypeError):
                key = ("", 0)  # unreadable: sent without a token, refused as such
            groups.setdefault(key, []).append(line)
        for (run_id, epoch), group in groups.items():
            token = run_token(self.settings, run_id, epoch) if run_id else None
            HttpSink(self.settings.control_plane_url, token).send(group)
