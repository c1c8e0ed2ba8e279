"""The worker's pieces that need no MongoDB: pipelines, sessions, step limits, the kernel's
environment. Fakes here are of aisci's own objects (a lease keeper's flags), never of a
database or a store."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from aisci_nb.contract import runtoken
from aisci_nb.contract.failures import FailureCode
from aisci_nb.contract.runinfo import API_KEY_ENV
from aisci_nb.events.emitter import DebugSink, Emitter, RunEmitter
from aisci_nb.queue.claims import RUNS, Claim
from aisci_nb.settings import Settings
from aisci_nb.storage.store import LocalStore
from aisci_nb.worker import pipelines
from aisci_nb.worker.kernel_env import kernel_env, run_token, secret_values
from aisci_nb.worker.pipelines import PIPELINES, Pipeline, Step
from aisci_nb.worker.session import RunSession
from aisci_nb.worker.step import StepRunner, off_main_thread

SECRET = "s3cr3t-value-for-the-test"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(mongodb_url="mongodb://127.0.0.1:1/t", aisci_api_key=SECRET,
                    work_dir=tmp_path / "work", artifacts_dir=tmp_path / "artifacts",
                    _env_file=None)


def claim(epoch: int = 4) -> Claim:
    return Claim({"_id": "run-1", "attempt": 2, "leaseEpoch": epoch, "seqCeiling": 2000}, epoch,
                 RUNS)


class FakeLease:
    """The two flags of a LeaseKeeper that a session reads."""

    def __init__(self) -> None:
        self.lost = threading.Event()
        self.cancel: dict | None = None


def test_registry_has_the_four_pipelines() -> None:
    assert list(PIPELINES) == ["experiment", "ideation", "paper", "review"]
    assert pipelines.pipeline("experiment").step("Stage_1").notebook.endswith(".ipynb")
    with pytest.raises(KeyError, match="known: experiment, ideation, paper, review"):
        pipelines.pipeline("nope")
    with pytest.raises(KeyError, match="has no step 'Stage_9'; its steps: Stage_1"):
        pipelines.EXPERIMENT.step("Stage_9")


def test_every_registered_step_notebook_exists() -> None:
    for p in PIPELINES.values():
        for step in p:
            assert step.notebook_path().is_file(), step


def test_register_adds_a_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipelines, "PIPELINES", dict(PIPELINES))
    extra = pipelines.register(Pipeline("smoke", (Step("A", "a.ipynb", "a"),)))
    assert pipelines.pipeline("smoke") is extra and len(extra) == 1


def test_session_stop_reasons_in_order_of_precedence() -> None:
    session = RunSession(claim(), None, lease=FakeLease())  # type: ignore[arg-type]
    assert session.stop_reason() is None and not session.interrupted
    session.releasing = True
    assert session.stop_reason()[0] == FailureCode.RELEASED
    session.lease.cancel = {"by": "ana"}
    assert session.stop_reason() == (FailureCode.CANCELED, "canceled by ana")
    session.lease.lost.set()
    assert session.stop_reason()[0] == FailureCode.LEASE_LOST and session.lost


def test_a_lost_session_says_nothing(tmp_path: Path) -> None:
    sink = DebugSink()
    emitter = Emitter(sink, source="test://")
    session = RunSession(claim(), RunEmitter(emitter, "run-1"), lease=FakeLease())  # type: ignore[arg-type]
    session.emit("ai.run.heartbeat")
    session.lease.lost.set()
    session.emit("ai.run.heartbeat")
    emitter.close(timeout_s=5)
    assert [e["type"] for e in sink.sent] == ["ai.run.heartbeat"]


def test_run_info_carries_all_the_plumbing(settings: Settings, tmp_path: Path) -> None:
    runner = StepRunner(settings, None, LocalStore(tmp_path / "a"), tmp_path, "pod://p")  # type: ignore[arg-type]
    events = RunEmitter(Emitter(DebugSink(), source="x"), "run-1", traceparent="00-a-b-01")
    info = runner.run_info(claim(), {"Title": "t"}, {}, events)
    assert info.run_id == "run-1" and info.lease_epoch == 4 and info.inputs is None
    assert info.seq_path == str((tmp_path / "work" / "run-1" / "events.seq").resolve())
    # the kernel's own spool: its leftovers are re-sent under its run token, not the worker key
    assert info.spool_dir == str((tmp_path / "work" / "run-1" / "kernel-spool").resolve())
    assert info.spool_max_bytes == settings.spool_max_bytes
    assert (info.events_url, info.event_source, info.traceparent) == (
        settings.control_plane_url, "pod://p", "00-a-b-01")
    assert SECRET not in info.model_dump_json()
    events.emitter.close(timeout_s=1)


def test_step_limits_override_the_settings(settings: Settings, tmp_path: Path) -> None:
    runner = StepRunner(settings, None, LocalStore(tmp_path), tmp_path, "pod://p")  # type: ignore[arg-type]
    own = runner.limits(Step("S", "s.ipynb", "s", timeout_s=5, cell_timeout_s=2))
    assert (own.step_timeout_s, own.cell_timeout_s) == (5, 2)
    default = runner.limits(Step("S", "s.ipynb", "s"))
    assert default.step_timeout_s == settings.step_timeout_s


def test_the_kernel_gets_a_run_token_never_the_worker_key(settings: Settings,
                                                         tmp_path: Path) -> None:
    assert secret_values(settings) == [SECRET]
    token = run_token(settings, "run-1", 3)
    env = kernel_env(settings, token, tmp_path / "outbox")
    assert API_KEY_ENV not in env and SECRET not in "\n".join(env.values())
    assert env["AISCI_RUN_TOKEN"] == token and env["AISCI_OUTBOX"] == str(tmp_path / "outbox")
    scope = runtoken.verify(token, [SECRET])
    assert (scope.run_id, scope.epoch) == ("run-1", 3)


def test_off_main_thread_returns_and_raises() -> None:
    assert off_main_thread(lambda: threading.current_thread().name) == "aisci-step"
    with pytest.raises(ZeroDivisionError):
        off_main_thread(lambda: 1 / 0)
