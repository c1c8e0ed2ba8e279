"""The artifact store: one interface, two backends (any S3-compatible server, a local directory).

Keys are `runs/{run_id}/...`. Uploads compute sha256 and size on the way, so the
`ai.artifact.registered` event describes exactly the bytes that were stored.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import mimetypes
import secrets
import shutil
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from pydantic import create_model
from pydantic_settings import BaseSettings
from tenacity import retry, stop_after_attempt, wait_exponential

from ..errors import StorageError
from ..settings import Settings

_retry = retry(stop=stop_after_attempt(4), wait=wait_exponential(0.2, max=3), reraise=True)

DEFAULT_PART_SIZE = 16 * 1024 * 1024  # multipart above this; S3 wants parts of 5 MiB or more


class _StoreSettingsBase(BaseSettings):
    model_config = Settings.model_config


# Only the store's part of Settings (same variables, same .env), for processes that have
# no database: the notebook kernel registering artifacts.
StoreSettings = create_model(  # type: ignore[call-overload]
    "StoreSettings",
    __base__=_StoreSettingsBase,
    **{name: (Settings.model_fields[name].annotation, Settings.model_fields[name])
       for name in ("minio_endpoint", "minio_access_key", "minio_secret_key", "minio_bucket",
                    "minio_secure", "artifacts_dir")},
)


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


def bytes_digest(data: bytes) -> tuple[int, str]:
    return len(data), hashlib.sha256(data).hexdigest()


class ArtifactStore(Protocol):
    def put_file(self, key: str, path: Path, content_type: str | None = None) -> StoredObject: ...

    def put_bytes(self, key: str, data: bytes, content_type: str) -> StoredObject: ...

    def presigned_url(self, key: str, expires_s: int = 3600) -> str: ...

    def get_file(self, key: str, dest: Path) -> Path: ...

    def get_bytes(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...


class LocalStore:
    """A directory on disk: the embedded default when no S3 server is configured.

    Its presigned URLs point at the control plane's `/artifacts/{key}` route, signed with
    a key of this instance: the control plane both signs and serves them.
    """

    def __init__(self, root: Path, *, url_base: str = "", signing_key: bytes | None = None):
        self.root = root.resolve()
        self.url_base = url_base.rstrip("/")
        self._signing_key = signing_key or secrets.token_bytes(32)

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

    def put_bytes(self, key: str, data: bytes, content_type: str) -> StoredObject:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(dest)
        size, sha = bytes_digest(data)
        return StoredObject(key, dest.as_uri(), size, sha, content_type)

    def get_file(self, key: str, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._path(key), dest)
        return dest

    def _signature(self, key: str, expires: int) -> str:
        return hmac.new(self._signing_key, f"{key}\n{expires}".encode(), "sha256").hexdigest()

    def presigned_url(self, key: str, expires_s: int = 3600) -> str:
        self._path(key)  # refuses keys that escape the store
        expires = int(time.time()) + expires_s
        return (f"{self.url_base}/artifacts/{quote(key)}"
                f"?expires={expires}&signature={self._signature(key, expires)}")

    def verify(self, key: str, expires: int, signature: str) -> Path | None:
        """The file behind a presigned URL, if the signature holds and it has not expired."""
        if expires < time.time():
            return None
        if not hmac.compare_digest(signature, self._signature(key, expires)):
            return None
        path = self._path(key)
        return path if path.is_file() else None

    def get_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()


class S3Store:
    """Any S3-compatible server through the `minio` SDK (MinIO, AWS S3, versitygw, ...)."""

    def __init__(
        self, endpoint: str, access_key: str, secret_key: str, bucket: str, secure: bool = False,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        from minio import Minio

        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure)
        self.bucket = bucket
        self.endpoint = endpoint
        self.part_size = part_size

    def ensure_bucket(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)

    @_retry
    def put_file(self, key: str, path: Path, content_type: str | None = None) -> StoredObject:
        size, sha = file_digest(path)
        ctype = content_type or guess_type(path)
        self.client.fput_object(
            self.bucket, key, str(path), content_type=ctype, metadata={"x-amz-meta-sha256": sha},
            part_size=self.part_size,
        )
        return StoredObject(key, f"s3://{self.bucket}/{key}", size, sha, ctype)

    @_retry
    def put_bytes(self, key: str, data: bytes, content_type: str) -> StoredObject:
        size, sha = bytes_digest(data)
        self.client.put_object(self.bucket, key, io.BytesIO(data), size,
                               content_type=content_type, metadata={"x-amz-meta-sha256": sha})
        return StoredObject(key, f"s3://{self.bucket}/{key}", size, sha, content_type)

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
        # A download, never a page rendered in the S3 origin.
        return self.client.presigned_get_object(
            self.bucket, key, expires=timedelta(seconds=expires_s),
            response_headers={"response-content-disposition": "attachment"},
        )


def open_store(settings: Settings | StoreSettings) -> ArtifactStore:
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


def store_from_env() -> ArtifactStore:
    """The store described by the environment (and `.env`), without the database settings."""
    settings = StoreSettings()
    if settings.minio_endpoint and not (settings.minio_access_key and settings.minio_secret_key):
        raise StorageError("MINIO_ACCESS_KEY and MINIO_SECRET_KEY are required with "
                           "MINIO_ENDPOINT")
    return open_store(settings)
