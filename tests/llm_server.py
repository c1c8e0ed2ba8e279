"""A local HTTP server speaking the OpenAI chat-completions and Anthropic Messages wire
formats, for the provider tests and the overhead benchmark (LLM APIs are unreachable here).

What it answers depends on the requested model: `tools` calls a tool, `json` answers JSON
(wrapped in prose for Anthropic), `flaky` answers 429 with `Retry-After: 1` the first time,
`slow` waits `SLOW_S` seconds, `missing` is an unknown model (404), `down` always answers
503; anything else echoes the
last user message. A key other than `KEY` gets 401. Every request is recorded.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KEY = "test-llm-key-not-a-secret"
SLOW_S = 5.0


@dataclass
class Seen:
    requests: list[dict[str, Any]] = field(default_factory=list)
    per_model: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _last_user(messages: list[dict]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user" and isinstance(m.get("content"), str):
            return m["content"]
    return ""


def openai_reply(body: dict) -> dict:
    model = body["model"]
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if model == "tools":
        message["tool_calls"] = [{"id": "call_1", "type": "function", "function": {
            "name": body["tools"][0]["function"]["name"], "arguments": '{"city": "Paris"}'}}]
    elif model == "json":
        message["content"] = '{"answer": 42}'
    else:
        message["content"] = f"echo: {_last_user(body['messages'])}"
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if model == "tools" else "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
                      "prompt_tokens_details": {"cached_tokens": 4}}}


def anthropic_reply(body: dict) -> dict:
    model = body["model"]
    if model == "tools":
        content = [{"type": "text", "text": "Let me look."},
                   {"type": "tool_use", "id": "toolu_1", "name": body["tools"][0]["name"],
                    "input": {"city": "Paris"}}]
    elif model == "json":
        content = [{"type": "text", "text": 'Here it is:\n```json\n{"answer": 42}\n```'}]
    else:
        content = [{"type": "text", "text": f"echo: {_last_user(body['messages'])}"}]
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": "tool_use" if model == "tools" else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 7, "output_tokens": 5, "cache_read_input_tokens": 4,
                      "cache_creation_input_tokens": 0}}


def _error(kind: str, message: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": message, "code": kind}}


class Handler(BaseHTTPRequestHandler):
    seen: Seen

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        anthropic = self.path.endswith("/messages")
        # Anthropic's key travels as x-api-key (recent SDKs send a bearer token instead).
        key = (self.headers.get("x-api-key") if anthropic else None) or \
            (self.headers.get("authorization") or "").removeprefix("Bearer ")
        model = body.get("model", "")
        with self.seen.lock:
            self.seen.per_model[model] += 1
            n = self.seen.per_model[model]
            self.seen.requests.append({"path": self.path, "body": body, "t": time.monotonic(),
                                       "key": key})
        if key != KEY:
            return self._send(401, _error("authentication_error", "invalid x-api-key"))
        if model == "missing":
            return self._send(404, _error("not_found_error", f"model: {model}"))
        if model == "down":
            return self._send(503, _error("overloaded_error", "try later"))
        if model == "flaky" and n == 1:
            return self._send(429, _error("rate_limit_error", "slow down"),
                              {"retry-after": "1"})
        if model == "slow":
            time.sleep(SLOW_S)
            with contextlib.suppress(OSError):  # the client gave up long ago
                self._send(200, anthropic_reply(body) if anthropic else openai_reply(body))
            return
        self._send(200, anthropic_reply(body) if anthropic else openai_reply(body))


@contextmanager
def llm_server() -> Iterator[tuple[str, Seen]]:
    """(base URL, what it saw) of a server on a free loopback port, for the block."""
    seen = Seen()
    handler = type("BoundHandler", (Handler,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="llm-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
