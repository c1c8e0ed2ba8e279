"""Response headers every answer carries: no framing, no sniffing, no inline script."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Pages run only their own scripts from /static (no inline script), talk only to this origin
# (fetch and server-sent events), and frame only this origin's sandboxed notebook HTML,
# figures and PDFs.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; "
            "base-uri 'none'")
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
                         # Not "no-referrer": with it a browser's same-origin form post says
                         # `Origin: null`, which the CSRF check must refuse (sign-in broke).
                         b"referrer-policy": b"same-origin",
                         b"cross-origin-opener-policy": b"same-origin"}
                if self.hsts or scope.get("scheme") == "https":
                    extra[b"strict-transport-security"] = b"max-age=31536000"
                headers += [(k, v) for k, v in extra.items() if k not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
