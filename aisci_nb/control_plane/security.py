"""Response headers every answer carries: no framing, no sniffing, no inline script."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_CSP = ("default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
# Swagger UI loads its script from a CDN and starts it inline: only on the docs page.
DOCS_CSP = ("default-src 'none'; script-src https://cdn.jsdelivr.net 'unsafe-inline'; "
            "style-src https://cdn.jsdelivr.net 'unsafe-inline'; img-src 'self' data: "
            "https://fastapi.tiangolo.com; connect-src 'self'; frame-ancestors 'none'; "
            "base-uri 'none'")
# An artifact is someone's file: downloaded, never run in this origin.
ARTIFACT_CSP = "sandbox; default-src 'none'; frame-ancestors 'none'"


class SecurityHeaders:
    """Pure ASGI middleware (no buffering): adds the headers unless a route set its own."""

    def __init__(self, app: ASGIApp, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope.get("path") == "/docs" else PAGE_CSP

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = {b"content-security-policy": csp.encode(),
                         b"x-content-type-options": b"nosniff",
                         b"x-frame-options": b"DENY",
                         b"referrer-policy": b"no-referrer",
                         b"cross-origin-opener-policy": b"same-origin"}
                if self.hsts or scope.get("scheme") == "https":
                    extra[b"strict-transport-security"] = b"max-age=31536000"
                headers += [(k, v) for k, v in extra.items() if k not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
