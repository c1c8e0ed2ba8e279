"""People who use the control plane: users with hashed passwords, personal API tokens,
sign-in sessions and the audit trail, all in MongoDB.

Passwords are hashed with scrypt (stdlib, memory-hard) and a per-user salt; API tokens and
session ids are long random strings, so a plain SHA-256 of them is what is stored: a copy
of the database does not let anyone sign in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.database import Database

TOKEN_PREFIX = "aisci_pat_"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
NAME_MAX = 64

INDEXES: dict[str, list[IndexModel]] = {
    "sessions": [IndexModel([("expiresAt", ASCENDING)], expireAfterSeconds=0)],
    "api_tokens": [IndexModel([("user", ASCENDING)])],
    "audit": [IndexModel([("at", DESCENDING)]), IndexModel([("target", ASCENDING)])],
}


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"


RANK = {Role.VIEWER: 0, Role.OPERATOR: 1}


class AccountError(ValueError):
    """A bad user name, role or password; the message is one line for the user."""


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    via: str  # "session", "token" (personal API token) or "single-user"

    def can(self, role: Role | str) -> bool:
        return RANK[self.role] >= RANK[Role(role)]


def ensure_indexes(db: Database) -> None:
    for name, indexes in INDEXES.items():
        db[name].create_indexes(indexes)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    enc = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${enc(salt).decode()}${enc(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _check_name(name: str) -> str:
    if not name or len(name) > NAME_MAX or not all(c.isalnum() or c in "._-@" for c in name):
        raise AccountError(f"user name {name!r}: use 1-{NAME_MAX} letters, digits, . _ - @")
    return name


def add_user(db: Database, name: str, role: str, password: str) -> None:
    """Create or update a user (the password is replaced, existing tokens keep working)."""
    try:
        role = Role(role)
    except ValueError:
        raise AccountError(f"role {role!r}: use operator or viewer") from None
    if len(password) < 8:
        raise AccountError("password: at least 8 characters")
    now = datetime.now(UTC)
    db.users.update_one({"_id": _check_name(name)}, {
        "$set": {"role": role.value, "passwordHash": hash_password(password), "updatedAt": now},
        "$setOnInsert": {"createdAt": now}}, upsert=True)


def authenticate(db: Database, name: str, password: str) -> User | None:
    doc = db.users.find_one({"_id": name}) if name else None
    if doc is None:
        verify_password(password, hash_password("x" * 8))  # same cost whether or not known
        return None
    if not verify_password(password, doc.get("passwordHash", "")):
        return None
    return User(doc["_id"], Role(doc["role"]), "session")


def create_token(db: Database, user: str, label: str = "") -> str:
    """A personal API token for `user`; only its hash is stored, the token is shown once."""
    if db.users.find_one({"_id": user}, {"_id": 1}) is None:
        raise AccountError(f"no user {user!r}: add it first with `aisci user add`")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.api_tokens.insert_one({"_id": sha256(token), "user": user, "label": label[:200],
                              "createdAt": datetime.now(UTC)})
    return token


def user_for_token(db: Database, token: str) -> User | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    doc = db.api_tokens.find_one({"_id": sha256(token)})
    user = db.users.find_one({"_id": doc["user"]}) if doc else None
    if user is None:
        return None
    return User(user["_id"], Role(user["role"]), "token")


def open_session(db: Database, user: User, ttl_s: float) -> tuple[str, str]:
    """(session id for the cookie, CSRF token for the forms) of a new sign-in."""
    sid = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    db.sessions.insert_one({
        "_id": sha256(sid), "user": user.name, "role": user.role.value, "via": user.via,
        "csrf": csrf, "createdAt": datetime.now(UTC),
        "expiresAt": datetime.now(UTC) + timedelta(seconds=ttl_s)})
    return sid, csrf


def session(db: Database, sid: str) -> tuple[User, str] | None:
    """The signed-in user and the session's CSRF token, while the session lasts."""
    doc = db.sessions.find_one({"_id": sha256(sid), "expiresAt": {"$gt": datetime.now(UTC)}})
    if doc is None:
        return None
    if doc.get("via") != "single-user":
        user = db.users.find_one({"_id": doc["user"]}, {"role": 1})
        if user is None:
            return None  # the user was removed: their sessions end
        doc["role"] = user["role"]
    return User(doc["user"], Role(doc["role"]), doc.get("via", "session")), doc["csrf"]


def close_session(db: Database, sid: str) -> None:
    db.sessions.delete_one({"_id": sha256(sid)})


def audit(db: Database, user: User | str, action: str, target: str | None = None,
          **detail: Any) -> None:
    """Record who did what, when: every state-changing action by a person goes here."""
    who = user.name if isinstance(user, User) else user
    via = user.via if isinstance(user, User) else None
    db.audit.insert_one({"at": datetime.now(UTC), "user": who, "via": via, "action": action,
                         "target": target, "detail": detail or None})
