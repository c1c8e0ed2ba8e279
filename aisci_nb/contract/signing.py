"""HMAC signing of an ingest body: what the kernel's sender signs and the ingest checks.

Lives in the contract because both sides need the one definition, and the control plane
must not import the sending side to check it.
"""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, timestamp: str, body: bytes, method: str = "POST",
         path: str = "/api/ingest/events") -> str:
    """HMAC-SHA256 over method, path, timestamp and the body's SHA-256, hex: what the ingest
    checks in HMAC mode. Binding method and path means a signature for one endpoint cannot
    be replayed against another."""
    digest = hashlib.sha256(body).hexdigest()
    msg = f"aisci-hmac-v2\n{method.upper()}\n{path}\n{timestamp}\n{digest}".encode()
    return "v2=" + hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()
