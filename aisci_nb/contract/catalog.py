"""The event catalogue: every event type of the contract, defined once.

The emitter validates what it sends against these models, the ingest validates what it
receives, and the UI takes its labels from here. Unknown extra fields are kept, so newer
emitters can add data without breaking older control planes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import UnknownEventType

StageName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00]+$")]


class _Data(BaseModel):
    model_config = ConfigDict(extra="allow")


class RunData(_Data):
    run_id: str = Field(min_length=1)


class IdeationData(_Data):
    hypothesis_id: str = Field(min_length=1)
    request_id: str = Field(min_length=1)


class RunEnqueued(RunData):
    hypothesis_id: str
    priority: int | None = None


class RunStarted(RunData):
    pod_id: str
    gpu: str | None = None
    region: str | None = None
    image: str | None = None


class RunHeartbeat(RunData):
    gpu_util: float | None = None
    mem_gb: float | None = None
    temp_c: float | None = None


class RunStatusChanged(RunData):
    from_: str = Field(alias="from")
    to: str
    reason: str | None = None


class RunCompleted(RunData):
    total_duration_s: float = Field(ge=0)


class RunFailed(RunData):
    stage: StageName | None = None
    code: str = Field(min_length=1)
    message: str
    traceback: str | None = None
    retryable: bool


class RunCanceled(RunData):
    by: str | None = None
    reason: str | None = None


class StageData(RunData):
    stage: StageName


class StageStarted(StageData):
    desc: str | None = None


class StageProgress(StageData):
    progress: float = Field(ge=0, le=1)
    eta_s: float | None = None
    iteration: int | None = None
    max_iterations: int | None = None
    good_nodes: int | None = None
    buggy_nodes: int | None = None
    total_nodes: int | None = None
    best_metric: float | None = None


class StageMetric(StageData):
    name: Name
    value: float


class StageCompleted(StageData):
    duration_s: float | None = None
    summary: dict | str | None = None


class CellData(StageData):
    """A code cell of the step's executed notebook; `cell_id` is its nbformat 4.5 id."""

    cell_index: int = Field(ge=0)
    cell_id: str | None = None
    label: str | None = None  # the cell's papermill_description


class CellStarted(CellData):
    pass


class CellCompleted(CellData):
    duration_s: float | None = None
    execution_count: int | None = None


class CellFailed(CellData):
    duration_s: float | None = None
    code: str = Field(min_length=1)
    message: str


class NodeEvent(StageData):
    node_id: str = Field(min_length=1)
    parent_id: str | None = None
    code_size_bytes: int | None = None
    is_buggy: bool | None = None
    metric: float | None = None
    exec_time_s: float | None = None


class IdeationGenerated(IdeationData):
    count: int = Field(ge=0)
    top_k: int | None = None


class PaperStarted(RunData):
    pass


class PaperGenerated(RunData):
    artifact_key: str
    word_count: int | None = None


class ValidationAutoStarted(RunData):
    model: str
    rubric_version: str | None = None


class ValidationAutoCompleted(RunData):
    verdict: Literal["pass", "fail"]
    scores: dict[str, float] | None = None
    notes: str | None = None


class ArtifactRegistered(RunData):
    key: str = Field(min_length=1)
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    content_type: str
    kind: str


class ArtifactFailed(RunData):
    key: str
    code: str
    message: str


class LlmUsage(RunData):
    """One LLM call's tokens and cost; the run's totals are derived from these."""

    model: str = Field(min_length=1)
    provider: str | None = None
    step: str | None = None
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    cost_usd: float = Field(ge=0)


class RunLog(RunData):
    level: Literal["debug", "info", "warn", "error"]
    message: str
    kv: dict | None = None
    source: str | None = None


@dataclass(frozen=True)
class EventType:
    name: str
    data: type[_Data]
    label: str
    subject: Literal["run", "hypothesis"] = "run"


CATALOG: dict[str, EventType] = {
    t.name: t
    for t in [
        EventType("ai.run.enqueued", RunEnqueued, "Run enqueued"),
        EventType("ai.run.started", RunStarted, "Run started"),
        EventType("ai.run.heartbeat", RunHeartbeat, "Heartbeat"),
        EventType("ai.run.status_changed", RunStatusChanged, "Status changed"),
        EventType("ai.run.completed", RunCompleted, "Run completed"),
        EventType("ai.run.failed", RunFailed, "Run failed"),
        EventType("ai.run.canceled", RunCanceled, "Run canceled"),
        EventType("ai.run.stage_started", StageStarted, "Stage started"),
        EventType("ai.run.stage_progress", StageProgress, "Stage progress"),
        EventType("ai.run.stage_metric", StageMetric, "Stage metric"),
        EventType("ai.run.stage_completed", StageCompleted, "Stage completed"),
        EventType("ai.run.cell_started", CellStarted, "Cell started"),
        EventType("ai.run.cell_completed", CellCompleted, "Cell completed"),
        EventType("ai.run.cell_failed", CellFailed, "Cell failed"),
        EventType("ai.node.created", NodeEvent, "Node created"),
        EventType("ai.node.code_generated", NodeEvent, "Node code generated"),
        EventType("ai.node.executing", NodeEvent, "Node executing"),
        EventType("ai.node.completed", NodeEvent, "Node completed"),
        EventType("ai.node.selected_best", NodeEvent, "Best node selected"),
        EventType("ai.ideation.generated", IdeationGenerated, "Ideas generated", "hypothesis"),
        EventType("ai.paper.started", PaperStarted, "Paper started"),
        EventType("ai.paper.generated", PaperGenerated, "Paper generated"),
        EventType("ai.validation.auto_started", ValidationAutoStarted, "Auto-validation started"),
        EventType("ai.validation.auto_completed", ValidationAutoCompleted, "Auto-validated"),
        EventType("ai.artifact.registered", ArtifactRegistered, "Artifact registered"),
        EventType("ai.artifact.failed", ArtifactFailed, "Artifact failed"),
        EventType("ai.llm.usage", LlmUsage, "LLM call"),
        EventType("ai.run.log", RunLog, "Log"),
    ]
}


def _validated(event_type: str, data: object) -> BaseModel:
    spec = CATALOG.get(event_type)
    if spec is None:
        raise UnknownEventType(f"unknown event type {event_type!r}")
    if not isinstance(data, dict):
        raise ValueError("data must be a JSON object")
    try:
        return spec.data.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "data"
        raise ValueError(f"data.{where}: {err['msg']}") from None


def check_data(event_type: str, data: dict) -> None:
    """Raise ValueError unless `data` is valid for `event_type` (the emitter's fast path)."""
    spec = CATALOG.get(event_type)
    try:
        spec.data.__pydantic_validator__.validate_python(data)  # type: ignore[union-attr]
    except (AttributeError, ValidationError):
        _validated(event_type, data)  # the slow path words the error


def validate_data(event_type: str, data: object) -> dict:
    """Validated, normalised `data` for `event_type` as a plain dict (aliases kept)."""
    return _validated(event_type, data).model_dump(by_alias=True, exclude_none=True)


def label(event_type: str) -> str:
    spec = CATALOG.get(event_type)
    return spec.label if spec else event_type
