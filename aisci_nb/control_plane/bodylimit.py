"""Request bodies of the ingest are limited while they stream, before anything reads them.

A pure ASGI middleware, outside every route and dependency: a declared `Content-Length`
over the limit (or not a plain number) is refused before one byte is read, and a streamed
(chunked) body is counted as it arrives and cut off at the limit. So neither an
authentication check that needs the body (HMAC) nor a parser ever holds more than the
limit in memory, whatever a client sends.
"""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_EVENT_BYTES = 1024 * 1024
_LENGTH = re.compile(rb"^[0-9]{1,15}$")


class IngestBodyLimit:
    def __init__(self, app: ASGIApp, prefix: str = "/api/ingest",
                 max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.prefix = prefix
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not _LENGTH.match(value):
                    await self._refuse(scope, receive, send, 400, "malformed Content-Length")
                    return
                if int(value) > self.max_bytes:
                    await self._refuse(scope, receive, send, 413,
                                       f"body over {self.max_bytes} bytes")
                    return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, f"body over {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int,
                      reason: str) -> None:
        await JSONResponse({"detail": reason}, status_code=status,
                           headers={"connection": "close"})(scope, receive, send)
