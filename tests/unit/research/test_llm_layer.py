"""The LLM layer without a network: the scripted provider, routing from settings, prices,
usage events and the budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from genai_prices import Usage as PriceUsage
from genai_prices import calc_price

from aisci_nb.contract.failures import LLM_CODES, RETRYABLE_CODES, code_for
from aisci_nb.research.llm import (
    LLM,
    BudgetExceeded,
    LLMConfigError,
    Message,
    ScriptedProvider,
    ScriptMissing,
    Usage,
    llm_for,
)
from aisci_nb.research.llm.errors import FAILURE_CODES
from aisci_nb.research.llm.ledger import Budget, Ledger, seed
from aisci_nb.research.llm.pricing import cost_usd
from aisci_nb.research.llm.routing import build_llm, parse_model, route
from aisci_nb.research.llm.usage import UsageMeter
from aisci_nb.settings import LLMSettings

SCRIPT = {"entries": [
    {"role": "ideation", "match": "idea", "model": "gpt-5-mini", "repeat": True,
     "response": {"text": "an idea"},
     "usage": {"input_tokens": 1000, "output_tokens": 200, "cached_tokens": 400}},
    {"role": "code", "model": "claude-sonnet-4-5",
     "response": {"text": "", "tool_calls": [{"name": "run", "arguments": {"x": 1}}]},
     "usage": {"input_tokens": 2000, "output_tokens": 500}},
]}


def settings(tmp_path: Path, **values) -> LLMSettings:
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))
    return LLMSettings(_env_file=None, llm_script=str(script), **values)


def chat(llm: LLM, role: str, text: str):
    return llm.chat(role, [Message("user", text)])


class Events:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def emit(self, event_type: str, **data) -> None:
        self.sent.append((event_type, data))


class Ctx:
    """What `llm_for` needs of a RunContext."""

    def __init__(self, stage: str = "Stage_1") -> None:
        self.stage = stage
        self.events = Events()
        self.logged: list[str] = []

    def log(self, message: str, level: str = "info") -> None:
        self.logged.append(message)


# -- the scripted provider -------------------------------------------------------------------

def test_scripted_same_call_same_answer(tmp_path: Path) -> None:
    llm = build_llm(settings(tmp_path))
    first, second = chat(llm, "ideation", "an idea please"), chat(llm, "ideation",
                                                                  "an idea please")
    assert first.text == second.text == "an idea"
    assert first.usage == second.usage == Usage(1000, 200, 400)
    assert first.model == "gpt-5-mini" and first.provider == "scripted"
    code = chat(llm, "code", "write it")
    assert code.tool_calls[0].name == "run" and code.tool_calls[0].arguments == {"x": 1}


def test_scripted_prompt_hash_pins_one_answer(tmp_path: Path) -> None:
    from aisci_nb.research.llm.scripted import prompt_sha256
    from aisci_nb.research.llm.types import ChatRequest

    digest = prompt_sha256(ChatRequest("review", (Message("user", "review this"),)))
    path = tmp_path / "pinned.json"
    path.write_text(json.dumps({"entries": [
        {"role": "review", "prompt_sha256": digest, "response": {"text": "accept"}}]}))
    provider = ScriptedProvider(path)
    llm = LLM({"*": (provider, "scripted")})
    assert [chat(llm, "review", "review this").text for _ in range(3)] == ["accept"] * 3
    with pytest.raises(ScriptMissing):
        chat(llm, "review", "review that")


def test_uncovered_prompt_names_the_script_to_add(tmp_path: Path) -> None:
    llm = build_llm(settings(tmp_path))
    with pytest.raises(ScriptMissing) as caught:
        chat(llm, "writeup", "write the paper")
    message = str(caught.value)
    assert "'writeup'" in message and str(tmp_path / "script.json") in message
    assert "prompt_sha256" in message
    assert code_for(type(caught.value).__name__) == "LLM_SCRIPT_MISSING"


# -- routing ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "base_url", "expected"), [
    ("gpt-5-mini", None, ("openai", "gpt-5-mini")),
    ("o3-mini", None, ("openai", "o3-mini")),
    ("claude-sonnet-4-5", None, ("anthropic", "claude-sonnet-4-5")),
    ("anthropic:claude-haiku-4-5", None, ("anthropic", "claude-haiku-4-5")),
    ("openai:my-finetune", None, ("openai", "my-finetune")),
    ("local:qwen2.5", "http://127.0.0.1:8001/v1", ("compatible", "qwen2.5")),
    ("openai-compatible:llama3", "http://h/v1", ("compatible", "llama3")),
    ("qwen2.5", "http://h/v1", ("compatible", "qwen2.5")),
    ("scripted:gpt-5-mini", None, ("scripted", "gpt-5-mini")),
])
def test_parse_model(text: str, base_url: str | None, expected: tuple[str, str]) -> None:
    assert parse_model(text, base_url) == expected


@pytest.mark.parametrize("text", ["qwen2.5", "local:qwen2.5", "openai:"])
def test_parse_model_refuses_what_it_cannot_route(text: str) -> None:
    with pytest.raises(LLMConfigError):
        parse_model(text)


def test_roles_route_to_providers_with_keys_else_scripted(tmp_path: Path) -> None:
    s = settings(tmp_path, openai_api_key="sk-test", llm_model_review="claude-sonnet-4-5",
                 llm_model_code="local:qwen", llm_base_url="http://127.0.0.1:9/v1")
    assert route(s, "ideation").describe() == "openai:gpt-5-mini"
    assert route(s, "code").describe() == "openai-compatible:qwen"
    assert route(s, "review").describe() == "scripted:claude-sonnet-4-5 (no ANTHROPIC_API_KEY)"
    offline = settings(tmp_path, openai_api_key="sk-test", llm_offline=True)
    assert route(offline, "ideation").kind == "scripted"
    empty_key = settings(tmp_path, openai_api_key="  ")
    assert route(empty_key, "ideation").why_scripted == "no OPENAI_API_KEY"


def test_offline_notice_is_logged_once(tmp_path: Path) -> None:
    from aisci_nb.research.llm import routing

    routing._told.clear()
    notices: list[str] = []
    for _ in range(3):
        build_llm(settings(tmp_path), on_notice=notices.append)
    assert len(notices) == 1 and "scripted provider" in notices[0]
    assert "ideation (no OPENAI_API_KEY)" in notices[0]


# -- prices ----------------------------------------------------------------------------------

def test_prices_come_from_genai_prices() -> None:
    usage = Usage(1000, 200, 400)
    expected = calc_price(PriceUsage(input_tokens=1000, output_tokens=200,
                                     cache_read_tokens=400), model_ref="gpt-5-mini",
                          provider_id="openai").total_price
    assert cost_usd("gpt-5-mini", usage, provider="openai") == (float(expected), True)
    # The scripted provider's usage is priced as the model it claims.
    assert cost_usd("gpt-5-mini", usage, provider="scripted")[0] == float(expected)
    assert cost_usd("no-such-model-xyz", usage) == (0.0, False)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_price_override_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"prices{suffix}"
    table = {"gpt-5-mini": {"input": 1.0, "output": 10.0, "cached_input": 0.5},
             "qwen": {"input": 0, "output": 0}}
    path.write_text(json.dumps(table))  # JSON is YAML too
    usage = Usage(1_000_000, 100_000, 400_000)
    assert cost_usd("gpt-5-mini", usage, overrides=path) == (0.6 + 0.2 + 1.0, True)
    assert cost_usd("qwen", usage, overrides=path) == (0.0, True)
    bad = tmp_path / f"bad{suffix}"
    bad.write_text(json.dumps({"m": {"input": 1}}))
    with pytest.raises(LLMConfigError, match="needs input and output"):
        cost_usd("m", usage, overrides=bad)


# -- usage events and budget -----------------------------------------------------------------

def test_llm_for_emits_usage_per_call(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("AISCI_LLM_LEDGER", raising=False)
    ctx = Ctx("Stage_2")
    llm = llm_for(ctx, settings(tmp_path))
    chat(llm, "ideation", "an idea")
    chat(llm, "code", "code it")
    usage = [d for t, d in ctx.events.sent if t == "ai.llm.usage"]
    assert [(u["role"], u["model"], u["step"]) for u in usage] == [
        ("ideation", "gpt-5-mini", "Stage_2"), ("code", "claude-sonnet-4-5", "Stage_2")]
    assert usage[0]["prompt_tokens"] == 1000 and usage[0]["completion_tokens"] == 200
    assert usage[0]["cached_tokens"] == 400 and usage[0]["provider"] == "scripted"
    expected = cost_usd("gpt-5-mini", Usage(1000, 200, 400))[0]
    assert usage[0]["cost_usd"] == pytest.approx(expected)
    assert usage[1]["cost_usd"] > 0 and usage[0]["latency_s"] >= 0
    from aisci_nb.contract.catalog import validate_data

    for u in usage:
        validate_data("ai.llm.usage", {"run_id": "r", **u})


def test_budget_stops_the_call_that_crosses_it_and_every_later_one(tmp_path: Path) -> None:
    one = cost_usd("gpt-5-mini", Usage(1000, 200, 400))[0]
    ledger = Ledger(tmp_path / "ledger.json")
    events = Events()
    meter = UsageMeter(events.emit, "Stage_1", ledger=ledger, budget=Budget(run_usd=2.5 * one))
    llm = build_llm(settings(tmp_path), observer=meter.observe, guard=meter.guard)
    chat(llm, "ideation", "idea")
    chat(llm, "ideation", "idea")
    with pytest.raises(BudgetExceeded, match="LLM_BUDGET_USD"):
        chat(llm, "ideation", "idea")  # answered and counted, then over
    assert len(events.sent) == 3
    with pytest.raises(BudgetExceeded):
        chat(llm, "ideation", "idea")  # refused before it is made
    assert len(events.sent) == 3
    assert Ledger.open(tmp_path / "ledger.json").run_usd == pytest.approx(3 * one)
    assert code_for("BudgetExceeded") == "BUDGET_EXCEEDED"
    assert "BUDGET_EXCEEDED" not in RETRYABLE_CODES


def test_step_budget_and_ledger_across_steps(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    seed(path, 0.5, {"Stage_1": 0.5})
    seed(path, 0.2, {"Stage_1": 0.1})  # a staler projection never lowers what the pod knows
    ledger = Ledger.open(path)
    assert ledger.run_usd == 0.5 and ledger.step_usd("Stage_1") == 0.5
    budget = Budget(run_usd=1.0, step_usd=0.5)
    with pytest.raises(BudgetExceeded, match="LLM_STEP_BUDGET_USD"):
        budget.check(ledger, "Stage_1")
    budget.check(ledger, "Stage_2")  # a fresh step may still spend
    ledger.add("Stage_2", 0.5)
    with pytest.raises(BudgetExceeded, match="LLM_BUDGET_USD"):
        budget.check(Ledger.open(path), "Stage_3")


def test_failure_codes_match_the_errors() -> None:
    assert FAILURE_CODES == LLM_CODES
    assert code_for("LLMAuthError") == "LLM_AUTH"
    assert code_for("LLMBadRequest") == "LLM_BAD_REQUEST"


def test_doctor_tells_where_each_role_goes() -> None:
    from aisci_nb.ops.doctor import Context, Status, check_llm_keys

    result = check_llm_keys(Context.gather({"OPENAI_API_KEY": "sk-doctor-secret",
                                            "LLM_MODEL_REVIEW": "claude-sonnet-4-5"}, None))
    assert result.status is Status.WARN
    assert "ideation→openai:gpt-5-mini" in result.detail
    assert "review→scripted:claude-sonnet-4-5" in result.detail
    assert "no ANTHROPIC_API_KEY" in result.detail and "sk-doctor-secret" not in result.line()
    bad = check_llm_keys(Context.gather({"LLM_MODEL": "mystery"}, None))
    assert bad.status is Status.FAIL and "provider:model" in bad.detail
