"""The OpenAI and Anthropic providers over real HTTP, against a local server speaking their
wire formats (`tests/llm_server.py`): the SDKs are used as they are, nothing is patched."""

from __future__ import annotations

import time

import pytest

from aisci_nb.contract.failures import RETRYABLE_CODES, code_for
from aisci_nb.research.llm import (
    LLMAuthError,
    LLMBadRequest,
    LLMTimeout,
    LLMUnavailable,
    Message,
    ToolCall,
    ToolSpec,
)
from aisci_nb.research.llm.anthropic_provider import AnthropicProvider
from aisci_nb.research.llm.openai_provider import OpenAIProvider
from aisci_nb.research.llm.routing import build_llm
from aisci_nb.research.llm.types import ChatRequest
from aisci_nb.settings import LLMSettings
from tests.llm_server import KEY, SLOW_S, llm_server

WEATHER = ToolSpec("weather", "The weather in a city",
                   {"type": "object", "properties": {"city": {"type": "string"}},
                    "required": ["city"]})


@pytest.fixture
def server():
    with llm_server() as (url, seen):
        yield url, seen


def providers(url: str, key: str = KEY, timeout_s: float = 30.0):
    return {
        "openai": OpenAIProvider(key, base_url=f"{url}/v1", timeout_s=timeout_s,
                                 name="openai"),
        "anthropic": AnthropicProvider(key, base_url=url, timeout_s=timeout_s),
    }


def ask(text: str, **kw) -> ChatRequest:
    return ChatRequest("code", (Message("system", "Be brief."), Message("user", text)), **kw)


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_text_and_usage(server, name: str) -> None:
    url, seen = server
    reply = providers(url)[name].complete(ask("hello", temperature=0.2, max_tokens=50), "echo")
    assert reply.text == "echo: hello"
    assert reply.provider == name and reply.model == "echo"
    body = seen.requests[-1]["body"]
    if name == "openai":
        assert reply.usage.input_tokens == 11 and reply.usage.cached_tokens == 4
        assert reply.usage.output_tokens == 7
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
        assert body["max_tokens"] == 50 and body["temperature"] == 0.2
    else:
        from aisci_nb.research.llm.anthropic_provider import TAKES_TEMPERATURE

        # Anthropic counts cache reads apart; the layer's input tokens include them.
        assert reply.usage.input_tokens == 7 + 4 and reply.usage.cached_tokens == 4
        assert reply.usage.output_tokens == 5
        assert body["system"] == "Be brief."
        assert body["messages"] == [{"role": "user", "content": "hello"}]
        assert body["max_tokens"] == 50
        assert body.get("temperature") == (0.2 if TAKES_TEMPERATURE else None)


def test_reasoning_models_take_max_completion_tokens_and_no_temperature(server) -> None:
    url, seen = server
    providers(url)["openai"].complete(ask("hi", temperature=0.7, max_tokens=99), "gpt-5-mini")
    body = seen.requests[-1]["body"]
    assert body["max_completion_tokens"] == 99
    assert "temperature" not in body and "max_tokens" not in body


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_tool_calls_round_trip(server, name: str) -> None:
    url, seen = server
    provider = providers(url)[name]
    reply = provider.complete(ask("weather?", tools=(WEATHER,)), "tools")
    assert reply.tool_calls == (ToolCall(reply.tool_calls[0].id, "weather", {"city": "Paris"}),)
    sent = seen.requests[-1]["body"]["tools"][0]
    assert (sent["function"]["parameters"] if name == "openai" else sent["input_schema"]) \
        == WEATHER.parameters
    # The answer goes back as a tool result, in each wire format.
    follow = ChatRequest("code", (Message("user", "weather?"), reply.as_message(),
                                  Message("tool", "sunny", tool_call_id=reply.tool_calls[0].id)))
    assert provider.complete(follow, "echo").text.startswith("echo")
    messages = seen.requests[-1]["body"]["messages"]
    if name == "openai":
        assert messages[1]["tool_calls"][0]["function"]["name"] == "weather"
        assert messages[2] == {"role": "tool", "tool_call_id": reply.tool_calls[0].id,
                               "content": "sunny"}
    else:
        assert messages[1]["content"][-1]["type"] == "tool_use"
        assert messages[2]["content"][0] == {"type": "tool_result",
                                             "tool_use_id": reply.tool_calls[0].id,
                                             "content": "sunny"}


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_json_output(server, name: str) -> None:
    url, seen = server
    reply = providers(url)[name].complete(ask("answer", json_output=True), "json")
    assert reply.text == '{"answer": 42}'
    body = seen.requests[-1]["body"]
    if name == "openai":
        assert body["response_format"] == {"type": "json_object"}
    else:
        assert "JSON" in body["system"]


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_429_is_retried_after_retry_after(server, name: str) -> None:
    url, seen = server
    reply = providers(url)[name].complete(ask("again"), "flaky")
    assert reply.text == "echo: again"
    tries = [r for r in seen.requests if r["body"]["model"] == "flaky"]
    assert len(tries) == 2
    assert tries[1]["t"] - tries[0]["t"] >= 0.95  # the server said Retry-After: 1


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_bad_key_fails_at_once_without_leaking_it(server, name: str) -> None:
    url, seen = server
    bad = "sk-wrong-" + "x" * 24
    with pytest.raises(LLMAuthError) as caught:
        providers(url, key=bad)[name].complete(ask("hi"), "echo")
    assert len(seen.requests) == 1  # no retry
    assert "401" in str(caught.value) and bad not in str(caught.value)


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_unknown_model_is_a_bad_request(server, name: str) -> None:
    url, seen = server
    with pytest.raises(LLMBadRequest, match="404"):
        providers(url)[name].complete(ask("hi"), "missing")
    assert len(seen.requests) == 1


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_slow_reply_times_out_within_the_limit(server, name: str) -> None:
    url, _ = server
    started = time.monotonic()
    with pytest.raises(LLMTimeout, match="LLM_TIMEOUT_S"):
        providers(url, timeout_s=0.5)[name].complete(ask("hi"), "slow")
    assert time.monotonic() - started < SLOW_S  # it did not wait for the server's answer


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_a_provider_that_stays_down_is_unavailable_after_the_attempts(server, name) -> None:
    url, seen = server
    provider = providers(url)[name]
    provider.max_attempts = 3
    with pytest.raises(LLMUnavailable, match="3 attempt"):
        provider.complete(ask("hi"), "down")
    assert len(seen.requests) == 3
    assert code_for("LLMUnavailable") in RETRYABLE_CODES


def test_openai_compatible_server_by_base_url(server) -> None:
    url, seen = server
    settings = LLMSettings(_env_file=None, llm_model="local:qwen2.5-coder",
                           llm_base_url=f"{url}/v1", llm_api_key=KEY)
    reply = build_llm(settings).chat("code", [Message("user", "hello")])
    assert reply.text == "echo: hello" and reply.provider == "openai-compatible"
    assert seen.requests[-1]["body"]["model"] == "qwen2.5-coder"
    assert seen.requests[-1]["path"] == "/v1/chat/completions"
