"""The kernel's way to S3 without the store's secret: files left in an outbox that the
worker uploads (scrubbed when text), then announces with `ai.artifact.registered`.

The kernel side (`stage`) hashes and copies the file and writes one pending entry; the
worker side (`drain`) trusts nothing in the entry: the file must lie inside the outbox,
the key under the run's prefix, and text is scrubbed before it is hashed and stored.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..contract.scrub import Scrubber

if TYPE_CHECKING:
    from .store import ArtifactStore, StoredObject

log = logging.getLogger("aisci.outbox")
OUTBOX_ENV = "AISCI_OUTBOX"
TEXT_TYPES = ("text/", "application/json", "application/x-ipynb+json", "application/xml",
              "application/x-ndjson", "application/yaml", "application/javascript")
TEXT_MAX = 64 * 1024 * 1024  # larger "text" is uploaded as is (logs that size are binary-ish)


@dataclass(frozen=True)
class Staged:
    key: str
    size: int
    sha256: str
    content_type: str


def stage(outbox: Path, key: str, path: Path, content_type: str | None, kind: str) -> Staged:
    """Kernel side: copy `path` into the outbox for the worker to upload as `key`."""
    from .store import file_digest, guess_type  # minio loads only when used

    files, pending = outbox / "files", outbox / "pending"
    files.mkdir(parents=True, exist_ok=True)
    pending.mkdir(parents=True, exist_ok=True)
    # Named in staging order: the worker uploads in name order, so a key staged twice (a
    # journal re-registered as the search goes) ends as its last version.
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex}"
    shutil.copyfile(path, files / name)
    size, sha = file_digest(files / name)
    ctype = content_type or guess_type(path)
    entry = {"key": key, "file": name, "kind": kind, "content_type": ctype, "sha256": sha}
    tmp = pending / f".{name}.tmp"
    tmp.write_text(json.dumps(entry))
    tmp.rename(pending / f"{name}.json")  # the worker never sees half an entry
    return Staged(key, size, sha, ctype)


def _is_text(content_type: str) -> bool:
    return content_type.startswith(TEXT_TYPES)


@dataclass
class Drainer:
    """Worker side: uploads what a run's kernels staged, once each."""

    outbox: Path
    run_prefixes: tuple[str, ...]
    store: ArtifactStore
    scrubber: Scrubber
    emit: Callable[..., None]
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def drain(self) -> list[str]:
        """Upload every pending entry; returns the messages of those that failed."""
        failures: list[str] = []
        pending = self.outbox / "pending"
        if not pending.is_dir():
            return failures
        with self._lock:
            for entry_path in sorted(pending.glob("*.json")):
                problem = self._one(entry_path)
                if problem:
                    failures.append(problem)
                entry_path.unlink(missing_ok=True)
        return failures

    def _one(self, entry_path: Path) -> str | None:
        try:
            entry: dict[str, Any] = json.loads(entry_path.read_text())
            key, name = str(entry["key"]), str(entry["file"])
            kind = str(entry.get("kind") or "file")
            ctype = str(entry.get("content_type") or "application/octet-stream")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"unreadable outbox entry {entry_path.name}: {exc}"
        files = (self.outbox / "files").resolve()
        path = (files / name).resolve()
        if path.parent != files or not path.is_file():
            return f"outbox entry {entry_path.name} names a file outside the outbox"
        if not key.startswith(self.run_prefixes) or ".." in key.split("/"):
            message = f"artifact key {key!r} is outside {' or '.join(self.run_prefixes)}"
            self.emit("ai.artifact.failed", key=key[:500], code="FORBIDDEN_KEY", message=message)
            return message
        try:
            if _is_text(ctype) and path.stat().st_size <= TEXT_MAX and self.scrubber:
                raw = path.read_bytes()
                clean = self.scrubber.bytes(raw)
                if clean != raw:
                    path.write_bytes(clean)
            stored: StoredObject = self.store.put_file(key, path, ctype)
        except Exception as exc:
            message = f"could not store {key}: {exc}"
            log.error(message)
            self.emit("ai.artifact.failed", key=key, code="STORAGE_ERROR", message=message)
            return message
        finally:
            path.unlink(missing_ok=True)
        self.emit("ai.artifact.registered", key=stored.key, bytes=stored.size,
                  sha256=stored.sha256, content_type=stored.content_type, kind=kind)
        return None
