"""What a step's kernel gets from the worker besides its parameters: credentials and the
store's coordinates, through its environment, so they never land in an executed notebook."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..contract.runinfo import API_KEY_ENV, AUTH_MODE_ENV
from ..settings import LLMSettings, Settings
from .usage import LEDGER_ENV, LEDGER_FILE


def secret_values(s: Settings) -> list[str]:
    """The credentials this worker holds; refused in parameters, kept out of notebooks."""
    found = [s.aisci_api_key, s.minio_secret_key, s.openai_api_key, s.anthropic_api_key,
             s.llm_api_key, s.s2_api_key, *s.ingest_api_keys]
    return [v.get_secret_value() for v in found if v and v.get_secret_value()]


def kernel_env(s: Settings, run_dir: Path | None = None) -> dict[str, str]:
    """The kernel's environment: how it gets credentials, the store, the LLM settings (with
    the run's LLM ledger) and ideation's literature search, never through parameters (which
    land in the executed notebook)."""
    env = dict(os.environ)
    llm = s.model_dump(include=set(LLMSettings.model_fields), exclude_none=True)
    env.update({k.upper(): (v.get_secret_value() if hasattr(v, "get_secret_value")
                            else str(v).lower() if isinstance(v, bool) else str(v))
                for k, v in llm.items()})
    if run_dir is not None:
        env[LEDGER_ENV] = str(run_dir / LEDGER_FILE)
    values: dict[str, Any] = {
        API_KEY_ENV: s.aisci_api_key.get_secret_value() if s.aisci_api_key else None,
        AUTH_MODE_ENV: s.aisci_ingest_auth,
        "MINIO_ENDPOINT": s.minio_endpoint,
        "MINIO_ACCESS_KEY": s.minio_access_key,
        "MINIO_SECRET_KEY": (s.minio_secret_key.get_secret_value()
                             if s.minio_secret_key else None),
        "MINIO_BUCKET": s.minio_bucket,
        "MINIO_SECURE": str(s.minio_secure).lower(),
        "ARTIFACTS_DIR": str(s.artifacts_dir.resolve()),
        # what the research libraries read (ideation's literature search)
        "LITERATURE_SEARCH": str(s.literature_search).lower(),
        "LITERATURE_SOURCE": s.literature_source,
        "S2_API_URL": s.s2_api_url,
        "S2_API_KEY": s.s2_api_key.get_secret_value() if s.s2_api_key else None,
        "S2_MAX_ATTEMPTS": s.s2_max_attempts,
        "S2_BACKOFF_S": s.s2_backoff_s,
    }
    env.update({k: str(v) for k, v in values.items() if v is not None})
    return env
