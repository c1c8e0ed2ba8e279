"""HMAC signing of an ingest body: what the kernel's sender signs and the ingest checks.

Lives in the contract because both sides need the one definition, and the control plane
must not import the sending side to check it.
"""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over `timestamp.body`, hex: what the ingest checks in HMAC mode."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()
