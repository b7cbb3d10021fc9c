"""Where the raw archive lives: a local directory or S3-compatible object storage.

``open_storage(url)``: a path or ``file://`` URL is a directory; ``s3://bucket/prefix``
is a bucket (boto3; ``endpoint_url`` for MinIO, Ceph, moto and the like; credentials
from the usual AWS variables). Keys are ``/``-separated relative paths.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit


class StorageError(RuntimeError):
    """The archive storage failed (message names the key and the reason)."""


class Storage(Protocol):
    """The few operations the archive needs."""

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def list(self, prefix: str) -> Iterator[str]: ...

    def delete(self, key: str) -> None: ...


class LocalStorage:
    """Files under ``root``; a put is durable (fsync, atomic rename) when it returns."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise StorageError(f"key {key!r} leaves the archive directory")
        return path

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        for attempt in (1, 2):  # a delete may remove the emptied folder meanwhile
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read archive file {key}: {exc.strerror}") from None

    def list(self, prefix: str) -> Iterator[str]:
        base = self.root / prefix
        if not base.exists():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith(".tmp-"):
                yield path.relative_to(self.root).as_posix()

    def delete(self, key: str) -> None:
        """Remove a file (nothing if it is gone already)."""
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete archive file {key}: {exc.strerror}") from None
        root = self.root.resolve()
        folder = path.parent
        while folder != root and root in folder.parents:
            try:
                folder.rmdir()  # only when empty, as a bucket has no folders
            except OSError:
                break
            folder = folder.parent


class S3Storage:
    """Objects in ``bucket`` under ``prefix``."""

    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        # Fail in seconds, not minutes: the archive consumer retries with its backoff.
        config = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3})
        self.client: Any = boto3.client("s3", endpoint_url=endpoint_url or None, config=config)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot upload {key}: {exc}") from None

    def get(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            found = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            data: bytes = found["Body"].read()
            return data
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot download {key}: {exc}") from None

    def list(self, prefix: str) -> Iterator[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        strip = len(self._key(""))
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix)
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    yield item["Key"][strip:]
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot list {prefix}: {exc}") from None

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot delete {key}: {exc}") from None


def open_storage(url: str, endpoint_url: str | None = None) -> Storage:
    """The storage a setting names."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise StorageError(f"{url!r}: an s3:// URL needs a bucket")
        return S3Storage(parts.netloc, parts.path, endpoint_url)
    if parts.scheme in ("", "file"):
        return LocalStorage(Path(parts.path if parts.scheme == "file" else url))
    raise StorageError(f"{url!r}: the archive is a directory, file:// or s3:// URL")
