"""One object-store interface, two implementations: a local directory and S3 (boto3).

Contract (tests/integration/test_archive_objectstore.py runs it against both):
- ``put(key, data)`` is atomic: a reader sees the old object, or the whole new one, never
  a part (local: temp file + fsync + rename; S3: PUT / completed multipart upload).
- ``get`` of a missing key raises :class:`ObjectNotFound`; ``delete`` of one is a no-op.
- ``tail(key, n)`` returns only the last ``n`` bytes (the whole object if it is smaller):
  one ranged read, so a Parquet footer is read without downloading the object.
- ``list(prefix)`` returns every key starting with ``prefix``, sorted, with its size.
- ``children(prefix)`` names the "directories" right under ``prefix`` (e.g. the topic ids
  under ``points/``) without listing every key below them, so that a read lists one
  partition's prefixes only.
- Transient trouble (connection refused, timeouts, 5xx, throttling) is retried with
  bounded exponential backoff; if it persists :class:`ObjectStoreUnavailable` is raised.
  Other failures (bad bucket, denied) raise :class:`ObjectStoreError` at once.
"""

from __future__ import annotations

import builtins
import io
import logging
import os
import random
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

R = TypeVar("R")


class ObjectStoreError(RuntimeError):
    """An object-store operation failed and retrying will not help."""


class ObjectStoreUnavailable(ObjectStoreError):
    """The object store stayed unreachable or failing through every retry."""


class ObjectNotFound(ObjectStoreError):
    """``get`` of a key that does not exist (e.g. deleted by a concurrent compaction)."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int


class ObjectStore(ABC):
    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically, replacing any previous object."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; raise :class:`ObjectNotFound`."""

    @abstractmethod
    def tail(self, key: str, size: int) -> bytes:
        """The last ``size`` (> 0) bytes of the object, or all of it if it is smaller;
        raise :class:`ObjectNotFound`."""

    @abstractmethod
    def list(self, prefix: str) -> list[ObjectInfo]:
        """Objects whose key starts with ``prefix``, sorted by key."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; missing keys are not an error."""

    def children(self, prefix: str) -> builtins.list[str]:
        """The distinct segments that follow ``prefix`` (empty or ending with ``/``) in keys
        with a further ``/`` after it, sorted: ``children("points/")`` gives the topic ids
        of the points objects. May also name a segment with no key left below it (a
        directory emptied by deletes); callers list below each one anyway.

        This default derives them from :meth:`list`; the backends override it with a
        listing of that one level."""
        _check_dir_prefix(prefix)
        found = set()
        for info in self.list(prefix):
            head, sep, _ = info.key[len(prefix) :].partition("/")
            if sep and head:
                found.add(head)
        return sorted(found)

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""


def _check_dir_prefix(prefix: str) -> None:
    if prefix and not prefix.endswith("/"):
        raise ValueError(f"children() wants a prefix ending with '/', got {prefix!r}")


class LocalDirStore(ObjectStore):
    """Objects as files under ``root`` (``/`` in keys = subdirectories).

    Temp files are ``.tmp-*`` siblings, never listed; a crash leaves at most such a file.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ObjectStoreError(f"invalid object key {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            # fsync the directory so the rename itself survives a power loss.
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ObjectStoreError(f"cannot write {key}: {exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise ObjectStoreError(f"cannot read {key}: {exc}") from exc

    def tail(self, key: str, size: int) -> bytes:
        if size <= 0:
            raise ValueError(f"tail size must be positive, got {size}")
        try:
            with open(self._path(key), "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - size))
                return f.read(size)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise ObjectStoreError(f"cannot read {key}: {exc}") from exc

    def list(self, prefix: str) -> list[ObjectInfo]:
        # Walk only the deepest directory the prefix names, not the whole tree.
        head = prefix.rpartition("/")[0]
        base = self.root / head if head else self.root
        if not base.is_dir():
            return []
        out = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    try:
                        out.append(ObjectInfo(key, full.stat().st_size))
                    except FileNotFoundError:  # deleted while we walked
                        continue
        return sorted(out, key=lambda o: o.key)

    def children(self, prefix: str) -> builtins.list[str]:
        _check_dir_prefix(prefix)
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        try:
            with os.scandir(base) as entries:
                return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise ObjectStoreError(f"cannot list {prefix}: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise ObjectStoreError(f"cannot delete {key}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class S3Config:
    endpoint_url: str | None
    bucket: str
    prefix: str
    access_key_id: str | None
    secret_access_key: str | None
    region: str
    multipart_threshold_bytes: int = 64 * 1024 * 1024
    multipart_chunk_bytes: int = 16 * 1024 * 1024
    attempts: int = 5
    backoff_seconds: float = 0.2
    max_backoff_seconds: float = 5.0
    timeout_seconds: float = 10.0


_RETRYABLE_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "503"}


class S3Store(ObjectStore):
    """Objects in ``bucket`` under ``prefix`` through boto3.

    Two retry layers: botocore's own (standard mode) inside each call, and ours around the
    whole operation with exponential backoff and jitter, bounded by ``attempts``, for
    connection errors and 5xx; after that :class:`ObjectStoreUnavailable`.
    """

    def __init__(self, config: S3Config, *, sleep: Callable[[float], None] = time.sleep) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self._cfg = config
        self._sleep = sleep
        self._prefix = config.prefix.strip("/") + "/" if config.prefix.strip("/") else ""
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=config.endpoint_url,
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key,
            region_name=config.region,
            config=Config(
                retries={"max_attempts": 2, "mode": "standard"},
                connect_timeout=config.timeout_seconds,
                read_timeout=config.timeout_seconds,
                s3={"addressing_style": "path"},
            ),
        )
        self._transfer = TransferConfig(
            multipart_threshold=config.multipart_threshold_bytes,
            multipart_chunksize=config.multipart_chunk_bytes,
            use_threads=False,
        )

    def _retry(self, what: str, op: Callable[[], R]) -> R:
        from botocore.exceptions import BotoCoreError, ClientError

        delay = self._cfg.backoff_seconds
        for attempt in range(1, self._cfg.attempts + 1):
            try:
                return op()
            except ClientError as exc:
                err = exc.response.get("Error", {})
                code = str(err.get("Code", ""))
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
                if code in ("NoSuchKey", "404"):
                    raise ObjectNotFound(what) from None
                if status < 500 and code not in _RETRYABLE_CODES:
                    raise ObjectStoreError(f"{what}: {code} {err.get('Message', '')}") from exc
                problem: Exception = exc
            except (BotoCoreError, OSError) as exc:  # connection refused, timeouts, ...
                problem = exc
            if attempt == self._cfg.attempts:
                raise ObjectStoreUnavailable(f"{what}: {problem}") from problem
            log.warning("S3 %s failed (attempt %d), retrying: %s", what, attempt, problem)
            self._sleep(min(delay, self._cfg.max_backoff_seconds) * (0.5 + random.random()))
            delay *= 2
        raise AssertionError("unreachable")

    def put(self, key: str, data: bytes) -> None:
        def op() -> None:
            # upload_fileobj switches to multipart above the threshold; S3 makes the
            # object visible only when the upload completes, so puts stay atomic.
            self._client.upload_fileobj(
                io.BytesIO(data), self._cfg.bucket, self._prefix + key, Config=self._transfer
            )

        self._retry(f"put {key}", op)

    def get(self, key: str) -> bytes:
        def op() -> bytes:
            resp = self._client.get_object(Bucket=self._cfg.bucket, Key=self._prefix + key)
            return bytes(resp["Body"].read())

        return self._retry(f"get {key}", op)

    def tail(self, key: str, size: int) -> bytes:
        if size <= 0:
            raise ValueError(f"tail size must be positive, got {size}")
        from botocore.exceptions import ClientError

        def op() -> bytes:
            try:
                resp = self._client.get_object(
                    Bucket=self._cfg.bucket, Key=self._prefix + key, Range=f"bytes=-{size}"
                )
            except ClientError as exc:
                # A suffix range of an empty object is unsatisfiable (416): it has no tail.
                if str(exc.response.get("Error", {}).get("Code", "")) == "InvalidRange":
                    return b""
                raise
            return bytes(resp["Body"].read())

        return self._retry(f"tail {key}", op)

    def list(self, prefix: str) -> list[ObjectInfo]:
        def op() -> list[ObjectInfo]:
            out = []
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._cfg.bucket, Prefix=self._prefix + prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    out.append(ObjectInfo(item["Key"][len(self._prefix) :], int(item["Size"])))
            return sorted(out, key=lambda o: o.key)

        return self._retry(f"list {prefix}", op)

    def children(self, prefix: str) -> builtins.list[str]:
        _check_dir_prefix(prefix)
        full = self._prefix + prefix

        def op() -> builtins.list[str]:
            # One level only: S3 rolls the keys below each "directory" into a common prefix.
            out = []
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._cfg.bucket, Prefix=full, Delimiter="/"
            )
            for page in pages:
                for item in page.get("CommonPrefixes", []):
                    out.append(str(item["Prefix"])[len(full) :].rstrip("/"))
            return sorted(x for x in out if x)

        return self._retry(f"list {prefix} (children)", op)

    def delete(self, key: str) -> None:
        self._retry(
            f"delete {key}",
            lambda: self._client.delete_object(Bucket=self._cfg.bucket, Key=self._prefix + key),
        )

    def ensure_bucket(self) -> None:
        """Create the bucket if missing (embedded/test setups; production buckets exist)."""
        from botocore.exceptions import ClientError

        def op() -> None:
            try:
                self._client.head_bucket(Bucket=self._cfg.bucket)
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchBucket"):
                    self._client.create_bucket(Bucket=self._cfg.bucket)
                else:
                    raise

        self._retry(f"ensure bucket {self._cfg.bucket}", op)

    def close(self) -> None:
        self._client.close()
