"""One typed settings object, read from the environment and `.env`.

Every process (worker, control plane, CLI) loads it through `load_settings()`, which turns a
missing or malformed value into one line naming the variable and exit code 2: operators on
a pod read that line, not a traceback.
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DB_NAME = "ai_scientist"


class WorkerMode(StrEnum):
    EXPERIMENT = "experiment"
    IDEATION = "ideation"
    HYBRID = "hybrid"


@functools.cache
def default_pod_id() -> str:
    """RunPod's id when present, else hostname plus a short suffix, stable for the process."""
    return os.environ.get("RUNPOD_POD_ID") or f"{socket.gethostname()}-{secrets.token_hex(3)}"


def _parse_uri(url: str) -> dict:
    # Imported here: a kernel reads the store's settings and must not load pymongo for it.
    from pymongo.uri_parser import parse_uri

    return parse_uri(url)


def _check_mongodb_url(url: str) -> str:
    try:
        _parse_uri(url)
    except Exception as exc:  # pymongo raises InvalidURI / ConfigurationError / ValueError
        raise ValueError(f"not a MongoDB connection string ({exc})") from None
    return url


def _split_keys(value: object) -> object:
    if isinstance(value, str):
        return [k.strip() for k in value.split(",") if k.strip()]
    return value


LLM_ROLES = ("ideation", "code", "feedback", "plot", "writeup", "citations", "review")


class LLMSettings(BaseSettings):
    """The LLM layer's settings. A kernel reads only these (it has no MongoDB URL), the worker
    reads them as part of `Settings` and hands them to its kernels through the environment."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    openai_api_key: SecretStr | None = None
    anthropic_api_key: SecretStr | None = None
    llm_api_key: SecretStr | None = Field(
        None, description="the key of an OpenAI-compatible server, if it wants one")
    llm_model: str = Field(
        "gpt-5-mini", description="provider:model (or a bare model name) for every role "
                              "without its own LLM_MODEL_<ROLE>")
    llm_model_ideation: str | None = None
    llm_model_code: str | None = None
    llm_model_feedback: str | None = None
    llm_model_plot: str | None = None
    llm_model_writeup: str | None = None
    llm_model_citations: str | None = None
    llm_model_review: str | None = None
    llm_base_url: str | None = Field(
        None, description="the base URL of an OpenAI-compatible server (vLLM, Ollama, "
                          "llama.cpp), e.g. http://127.0.0.1:8001/v1")
    llm_script: str = Field(
        "default", description="the offline scripted provider's script: a name under "
                               "aisci_nb/research/llm/scripts/ or a path")
    llm_offline: bool = Field(
        False, description="true or false: use the scripted provider even where a key is set")
    llm_timeout_s: float = Field(
        300.0, gt=0, description="seconds one LLM call may take in all, retries included")
    llm_max_attempts: int = Field(
        5, ge=1, description="attempts of an LLM call on 429, 5xx and timeouts")
    llm_prices_file: Path | None = Field(
        None, description="a YAML or JSON file of $/Mtok prices per model, over genai-prices")
    llm_budget_usd: float | None = Field(
        None, gt=0, description="US dollars of LLM calls one run may spend (unset: no limit)")
    llm_step_budget_usd: float | None = Field(
        None, gt=0, description="US dollars of LLM calls one step may spend (unset: no limit)")

    def model_for(self, role: str) -> str:
        """The `provider:model` text configured for a role."""
        return getattr(self, f"llm_model_{role}", None) or self.llm_model


class Settings(LLMSettings):
    """Connection settings and switches; names are the environment variables, upper-cased."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    mongodb_url: Annotated[str, AfterValidator(_check_mongodb_url)] = Field(
        description="a MongoDB connection string such as mongodb://127.0.0.1:27017/ai_scientist"
    )
    control_plane_url: str = Field(
        "http://127.0.0.1:8000", description="the control plane's base URL, e.g. http://host:8000"
    )
    minio_endpoint: str | None = Field(
        None, description="host:port of an S3-compatible server; unset means the local store"
    )
    minio_access_key: str | None = Field(None, description="the S3 access key")
    minio_secret_key: SecretStr | None = Field(None, description="the S3 secret key")
    minio_bucket: str = Field("aisci", description="the S3 bucket for artifacts")
    minio_secure: bool = Field(False, description="true or false: use HTTPS for S3")
    artifacts_dir: Path = Field(
        Path(".aisci/artifacts"), description="the directory of the local artifact store"
    )
    literature_search: bool = Field(
        True, description="true or false: ideation may search the literature")
    literature_source: Literal["auto", "recorded", "live"] = Field(
        "auto", description="auto (recorded results when the LLM is scripted), recorded, live")
    s2_api_url: str = Field("https://api.semanticscholar.org/graph/v1",
                            description="the Semantic Scholar Graph API's base URL")
    s2_api_key: SecretStr | None = Field(None, description="a Semantic Scholar API key")
    s2_max_attempts: int = Field(4, ge=1, description="attempts of a rate-limited search")
    s2_backoff_s: float = Field(2.0, ge=0, description="seconds before retrying a search; "
                                                       "doubles per attempt")
    runpod_pod_id: str = Field(default_factory=default_pod_id)
    worker_mode: WorkerMode = Field(
        WorkerMode.EXPERIMENT, description="one of experiment, ideation, hybrid"
    )
    worker_region: str | None = None
    poll_interval_s: float = Field(
        10.0, gt=0, description="seconds between queue polls where change streams are unavailable"
    )
    change_streams: bool = Field(
        True, description="true or false: wait on a change stream (false forces polling)"
    )
    lease_s: float = Field(60.0, gt=0, description="seconds a claim stays valid unless renewed")
    lease_renew_s: float = Field(15.0, gt=0, description="seconds between lease renewals")
    cancel_check_s: float = Field(
        2.0, gt=0, description="seconds between a running worker's checks for cancel requests"
    )
    reap_interval_s: float = Field(15.0, gt=0, description="seconds between expired-lease sweeps")
    max_attempts: int = Field(3, ge=1, description="attempts of a run before it is failed")
    retry_backoff_s: float = Field(
        30.0, ge=0, description="seconds before the second attempt; doubles per attempt"
    )
    retry_backoff_max_s: float = Field(900.0, ge=0, description="the largest retry delay")
    stop_grace_s: float = Field(
        5.0, ge=0, description="seconds between interrupting a stopped step's kernel and killing it"
    )
    aisci_api_key: SecretStr | None = Field(
        None, description="the bearer key this worker presents to the control plane"
    )
    aisci_ingest_auth: Literal["bearer", "hmac"] = Field(
        "bearer", description="bearer or hmac: how this worker authenticates its events")
    spool_max_bytes: int = Field(256 * 1024 * 1024, gt=0,
                                 description="bytes of unacknowledged events kept on disk")
    emit_flush_timeout_s: float = Field(
        30.0, ge=0, description="seconds to wait for event delivery at the end of a run")
    ingest_api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="comma-separated keys the control plane accepts"
    )
    ingest_allow_unauthenticated: bool = Field(
        False, description="true or false: accept events without credentials (migration only)"
    )
    ingest_require_hmac: bool = Field(
        False, description="true or false: refuse worker bearer keys; only HMAC-signed requests "
                           "(and run-scoped tokens) reach the ingest")
    run_token_ttl_s: float = Field(
        48 * 3600, gt=0, description="seconds a run-scoped kernel credential stays valid")
    aisci_ui_token: SecretStr | None = Field(
        None, description="single-user token (an operator): sign in with it on a laptop")
    metrics_token: SecretStr | None = Field(
        None, description="the bearer token Prometheus presents to GET /metrics")
    session_ttl_s: float = Field(12 * 3600, gt=0, description="seconds a sign-in lasts")
    cookie_secure: bool | None = Field(
        None, description="true or false: Secure cookies (unset: when served over https)")
    trusted_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["*"],
        description="comma-separated Host names the control plane answers (e.g. aisci.example.org)")
    work_dir: Path = Field(Path(".aisci/work"), description="where the worker executes steps")
    step_timeout_s: float | None = Field(
        None, gt=0, description="seconds one step notebook may run in all (unset: no limit)"
    )
    cell_timeout_s: float | None = Field(
        None, gt=0, description="seconds one notebook cell may run (unset: no limit)"
    )
    kernel_start_timeout_s: float = Field(60, gt=0, description="seconds for a kernel to start")
    live_notebook_s: float = Field(
        60, gt=0, description="seconds between uploads of a running step's notebook"
    )

    @model_validator(mode="before")
    @classmethod
    def _keys_from_csv(cls, values: dict) -> dict:
        for name in ("ingest_api_keys", "INGEST_API_KEYS", "trusted_hosts", "TRUSTED_HOSTS"):
            if name in values:
                values[name] = _split_keys(values[name])
        return values

    @model_validator(mode="after")
    def _s3_needs_credentials(self) -> Settings:
        if self.minio_endpoint:
            for name in ("minio_access_key", "minio_secret_key"):
                if not getattr(self, name):
                    raise ValueError(f"{name.upper()}: required when MINIO_ENDPOINT is set")
        return self

    @model_validator(mode="after")
    def _renew_before_expiry(self) -> Settings:
        if self.lease_renew_s >= self.lease_s:
            raise ValueError("LEASE_RENEW_S: must be shorter than LEASE_S")
        return self

    @property
    def db_name(self) -> str:
        return _parse_uri(self.mongodb_url).get("database") or DEFAULT_DB_NAME


def describe_error(exc: ValidationError) -> str:
    """The first problem as one line: `VARIABLE: what is wrong — what is expected`."""
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ()) if p != "__root__"]
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if not loc:
        return msg
    name = loc[0]
    field = Settings.model_fields.get(name)
    expected = field.description if field and field.description else None
    what = "missing" if err.get("type") == "missing" else f"invalid ({msg})"
    line = f"{name.upper()}: {what}"
    return f"{line} — expected {expected}" if expected else line


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, or exit 2 with one line naming the bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        print(f"aisci: configuration error: {describe_error(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
