"""What a step's kernel gets from the worker besides its parameters: credentials and the
store's coordinates, through its environment, so they never land in an executed notebook."""

from __future__ import annotations

import os
from typing import Any

from ..contract.runinfo import API_KEY_ENV, AUTH_MODE_ENV
from ..settings import Settings


def secret_values(s: Settings) -> list[str]:
    """The credentials this worker holds; refused in parameters, kept out of notebooks."""
    found = [s.aisci_api_key, s.minio_secret_key, s.openai_api_key, s.anthropic_api_key,
             *s.ingest_api_keys]
    return [v.get_secret_value() for v in found if v and v.get_secret_value()]


def kernel_env(s: Settings) -> dict[str, str]:
    """The kernel's environment: how it gets credentials and the store, never through
    parameters (which land in the executed notebook)."""
    env = dict(os.environ)
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
    }
    env.update({k: str(v) for k, v in values.items() if v is not None})
    return env
