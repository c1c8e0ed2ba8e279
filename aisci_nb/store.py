"""The artifact store: one interface, two backends (any S3-compatible server, a local directory).

Keys are `runs/{run_id}/...`. Uploads compute sha256 and size on the way, so the
`ai.artifact.registered` event describes exactly the bytes that were stored.
"""

from __future__ import annotations

import hashlib
import mimetypes
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from tenacity import retry, stop_after_attempt, wait_exponential

from .settings import Settings

_retry = retry(stop=stop_after_attempt(4), wait=wait_exponential(0.2, max=3), reraise=True)


@dataclass(frozen=True)
class StoredObject:
    key: str
    uri: str
    size: int
    sha256: str
    content_type: str


def file_digest(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def guess_type(path: Path) -> str:
    if path.suffix == ".ipynb":
        return "application/x-ipynb+json"
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


class ArtifactStore(Protocol):
    def put_file(self, key: str, path: Path, content_type: str | None = None) -> StoredObject: ...

    def get_file(self, key: str, dest: Path) -> Path: ...

    def get_bytes(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...


class LocalStore:
    """A directory on disk: the embedded default when no S3 server is configured."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"key escapes the store: {key!r}")
        return path

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> StoredObject:
        size, sha = file_digest(path)
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        shutil.copyfile(path, tmp)
        tmp.replace(dest)
        return StoredObject(key, dest.as_uri(), size, sha, content_type or guess_type(path))

    def get_file(self, key: str, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._path(key), dest)
        return dest

    def get_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()


class S3Store:
    """Any S3-compatible server through the `minio` SDK (MinIO, AWS S3, versitygw, ...)."""

    def __init__(
        self, endpoint: str, access_key: str, secret_key: str, bucket: str, secure: bool = False
    ) -> None:
        from minio import Minio

        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure)
        self.bucket = bucket
        self.endpoint = endpoint

    def ensure_bucket(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)

    @_retry
    def put_file(self, key: str, path: Path, content_type: str | None = None) -> StoredObject:
        size, sha = file_digest(path)
        ctype = content_type or guess_type(path)
        self.client.fput_object(
            self.bucket, key, str(path), content_type=ctype, metadata={"x-amz-meta-sha256": sha}
        )
        return StoredObject(key, f"s3://{self.bucket}/{key}", size, sha, ctype)

    @_retry
    def get_file(self, key: str, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.client.fget_object(self.bucket, key, str(dest))
        return dest

    @_retry
    def get_bytes(self, key: str) -> bytes:
        resp = self.client.get_object(self.bucket, key)
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self.client.stat_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return False
            raise
        return True

    def presigned_url(self, key: str, expires_s: int = 3600) -> str:
        return self.client.presigned_get_object(
            self.bucket, key, expires=timedelta(seconds=expires_s)
        )


def open_store(settings: Settings) -> ArtifactStore:
    """S3 when MINIO_ENDPOINT is set, else the local directory store."""
    if settings.minio_endpoint:
        assert settings.minio_access_key and settings.minio_secret_key  # checked by Settings
        return S3Store(
            settings.minio_endpoint,
            settings.minio_access_key,
            settings.minio_secret_key.get_secret_value(),
            settings.minio_bucket,
            settings.minio_secure,
        )
    return LocalStore(settings.artifacts_dir)
