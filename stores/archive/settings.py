"""Settings of ``python -m stores.archive`` (``STRATA_*``; docs/archive.md lists them)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from stores.archive.objectstore import LocalDirStore, ObjectStore, S3Config, S3Store
from stores.runtime.settings import StoreSettings

DEFAULT_PORT = 8114
DAY = 86400
#: reads computed at once, and the longest wait for one to finish (stores/archive/api.py)
READ_SLOTS = 2
READ_WAIT_SECONDS = 5.0


class ArchiveSettings(StoreSettings):
    """Store-runtime settings plus where objects go, when to flush, compact and expire."""

    archive_backend: Literal["local", "s3"] = Field(
        default="local", description="local = DATA_DIR/archive/objects (or archive_dir)"
    )
    archive_dir: Path | None = Field(default=None, description="local backend root")
    archive_s3_endpoint_url: str | None = Field(default=None, description="S3 endpoint URL")
    archive_s3_bucket: str = Field(default="strata-archive", description="S3 bucket")
    archive_s3_prefix: str = Field(default="", description="key prefix inside the bucket")
    archive_s3_access_key_id: str | None = None
    archive_s3_secret_access_key: str | None = None
    archive_s3_region: str = "us-east-1"
    archive_s3_create_bucket: bool = Field(default=False, description="create if missing")
    archive_s3_multipart_threshold_bytes: int = Field(default=64 * 1024 * 1024, ge=5 * 2**20)
    archive_s3_multipart_chunk_bytes: int = Field(default=16 * 1024 * 1024, ge=5 * 2**20)
    archive_s3_attempts: int = Field(default=5, ge=1, description="our retries per operation")
    archive_flush_points: int = Field(
        default=500_000, ge=1, description="flush a partition's buffer at this many points"
    )
    archive_flush_seconds: float = Field(
        default=60.0, gt=0, description="... or when its oldest buffered message is this old"
    )
    archive_max_buffer_points: int = Field(
        default=5_000_000,
        ge=1,
        description="points buffered over all partitions: above it the largest buffers are "
        "uploaded early; while uploads fail, stop consuming (retry only)",
    )
    archive_flush_sketches: int = Field(
        default=100_000,
        ge=1,
        description="flush a partition's sketch buffer at this many sketches (each weighs "
        "tens of points in memory)",
    )
    archive_max_buffer_sketches: int = Field(
        default=1_000_000,
        ge=1,
        description="sketches buffered over all partitions: above it the largest buffers are "
        "uploaded early; while uploads fail, stop consuming sketches",
    )
    archive_retry_max_seconds: float = Field(
        default=30.0, gt=0, description="longest backoff between failed flush attempts"
    )
    archive_row_group_rows: int = Field(default=256 * 1024, ge=1024)
    archive_read_slots: int = Field(
        default=READ_SLOTS,
        ge=1,
        description="point and sketch reads computed at once (each holds ~100 B per row read)",
    )
    archive_read_wait_seconds: float = Field(
        default=READ_WAIT_SECONDS,
        ge=0,
        description="longest wait for a read slot before answering 503",
    )
    archive_compact_interval_seconds: float = Field(
        default=3600.0, ge=0, description="scheduled compaction + retention; 0 = never"
    )
    archive_retention_days: int = Field(default=456, ge=1, description="15 months")
    archive_retention_overrides: dict[str, int] = Field(
        default_factory=dict, description='per-org days, JSON: {"acme": 30}'
    )

    def objects(self) -> ObjectStore:
        """The configured object store (callers close it)."""
        if self.archive_backend == "s3":
            s3 = S3Store(
                S3Config(
                    endpoint_url=self.archive_s3_endpoint_url,
                    bucket=self.archive_s3_bucket,
                    prefix=self.archive_s3_prefix,
                    access_key_id=self.archive_s3_access_key_id,
                    secret_access_key=self.archive_s3_secret_access_key,
                    region=self.archive_s3_region,
                    multipart_threshold_bytes=self.archive_s3_multipart_threshold_bytes,
                    multipart_chunk_bytes=self.archive_s3_multipart_chunk_bytes,
                    attempts=self.archive_s3_attempts,
                )
            )
            if self.archive_s3_create_bucket:
                s3.ensure_bucket()
            return s3
        root = self.archive_dir or self.data_dir / "archive" / "objects"
        return LocalDirStore(root)

    def retention_seconds(self) -> dict[str, int]:
        return {org: days * DAY for org, days in self.archive_retention_overrides.items()}

    @classmethod
    def load(cls) -> ArchiveSettings:
        return cls()
