"""The durable event spool: every event is on disk before it is sent, and stays until acked.

One append-only NDJSON file per (run, emitting process), held under an exclusive `flock`
while its process lives. The sender acknowledges events in the order they were written, so
a file whose every line was acked is emptied (and deleted when its emitter closes). A file
nobody holds a lock on is an orphan (its process died or gave up before the control plane
answered); `Spool.orphans()` hands it to a live emitter, which sends it again — the ingest
drops what it already has.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SpoolFull

DEFAULT_MAX_BYTES = 256 * 1024 * 1024


@dataclass
class SpoolFile:
    path: Path
    fd: int | None = None
    written: int = 0
    acked: int = 0
    bytes: int = 0
    adopted: bool = False

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else holds it
        self.fd = fd

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the lock
            self.fd = None


@dataclass
class Spool:
    root: Path
    max_bytes: int = DEFAULT_MAX_BYTES
    _files: dict[str, SpoolFile] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _token: str = field(default_factory=lambda: f"{os.getpid()}-{secrets.token_hex(4)}")

    @property
    def pending_bytes(self) -> int:
        return sum(f.bytes for f in self._files.values())

    def append(self, key: str, line: bytes) -> SpoolFile:
        """Write one event line for `key` (a run); raises SpoolFull past the bound."""
        with self._lock:
            if self.pending_bytes + len(line) > self.max_bytes:
                raise SpoolFull(
                    f"event spool full: {self.pending_bytes} bytes not yet acknowledged by the "
                    f"control plane are waiting in {self.root} (limit {self.max_bytes}); check "
                    "CONTROL_PLANE_URL and the control plane's health")
            spool_file = self._files.get(key)
            if spool_file is None:
                spool_file = SpoolFile(self.root / key / f"{self._token}.ndjson")
                self._files[key] = spool_file
            if spool_file.fd is None:
                spool_file.open()
            os.write(spool_file.fd, line)
            spool_file.written += 1
            spool_file.bytes += len(line)
            return spool_file

    def ack(self, spool_file: SpoolFile, count: int) -> None:
        """`count` more lines of the file were acknowledged; empty it once all were."""
        with self._lock:
            spool_file.acked += count
            if spool_file.acked < spool_file.written:
                return
            spool_file.written = spool_file.acked = spool_file.bytes = 0
            if spool_file.adopted:
                self._remove(spool_file)
                self._files = {k: f for k, f in self._files.items() if f is not spool_file}
            elif spool_file.fd is not None:
                os.ftruncate(spool_file.fd, 0)  # cheaper than a new file per batch

    @staticmethod
    def _remove(spool_file: SpoolFile) -> None:
        with contextlib.suppress(FileNotFoundError):
            spool_file.path.unlink()
        spool_file.close()

    def orphans(self) -> Iterator[tuple[SpoolFile, list[bytes]]]:
        """Files left by dead or finished processes, locked and adopted by this spool."""
        if not self.root.exists():
            return
        own = {f.path for f in self._files.values()}
        for path in sorted(self.root.glob("*/*.ndjson")):
            if path in own:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # its process is alive and still sending
                continue
            with open(path, "rb") as f:
                lines = [ln if ln.endswith(b"\n") else ln + b"\n" for ln in f if ln.strip()]
            if not lines:
                path.unlink(missing_ok=True)
                os.close(fd)
                continue
            adopted = SpoolFile(path, fd=fd, written=len(lines),
                                bytes=sum(map(len, lines)), adopted=True)
            with self._lock:
                self._files[f"adopted:{path}"] = adopted
            yield adopted, lines

    def close(self) -> None:
        """Release the locks; unacknowledged files stay for the next process to adopt."""
        with self._lock:
            for spool_file in self._files.values():
                if spool_file.written == spool_file.acked:
                    self._remove(spool_file)
                else:
                    spool_file.close()
