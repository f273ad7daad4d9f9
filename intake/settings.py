"""Intake settings: :class:`strata.settings.CommonSettings` plus the intake's own fields.

Read once in ``intake.__main__`` and passed down; every field is listed in docs/intake.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from strata.settings import CommonSettings

DEFAULT_PORT = 8100


class IntakeSettings(CommonSettings):
    """``STRATA_*`` environment for ``python -m intake``."""

    late_window_seconds: int = Field(
        default=3600, ge=0, description="points older than now minus this are rejected"
    )
    late_window_overrides: dict[str, int] = Field(
        default_factory=dict,
        description='per-org late windows, JSON {"org": seconds}; other orgs use the default',
    )
    future_window_seconds: int = Field(
        default=600, ge=0, description="points more than this far in the future are rejected"
    )
    produce_timeout_seconds: float = Field(
        default=5.0, gt=0, description="longest wait for broker acknowledgements before 503"
    )
    retry_after_seconds: int = Field(default=1, ge=0, description="Retry-After sent with 503")
    linger_ms: int = Field(default=5, ge=0, description="producer linger.ms")
    # The broker stores and serves what it is sent: lz4 batches of columnar points are
    # a fraction of the bytes tansu copies, for little producer and consumer CPU
    # (docs/intake.md, "What is written to Kafka").
    compression: Literal["none", "lz4", "snappy", "gzip", "zstd"] = Field(
        default="lz4", description="producer compression.type of every message intake writes"
    )
    queue_max_messages: int = Field(
        default=100_000, ge=1, description="producer local queue bound (full -> 503)"
    )
    metadata_refresh_seconds: float = Field(
        default=30.0, gt=0, description="how often partition counts are re-read from the broker"
    )
    announce_cache_size: int = Field(
        default=1_000_000, ge=1, description="(series, index bucket) pairs remembered as announced"
    )
    parse_threads: int = Field(
        default=1,
        ge=1,
        description="worker threads that decode and parse request bodies (more only add "
        "GIL contention: docs/intake.md)",
    )
    inline_parse_max_bytes: int = Field(
        default=524_288,
        ge=0,
        description="series bodies up to this size (as received, and decompressed) are parsed "
        "on the event loop instead of a parse thread (0: always the thread)",
    )
    coalesce_ms: float = Field(
        default=10.0,
        ge=0,
        description="requests arriving within this many ms share points messages and one "
        "acknowledgement wait (0: each request produces on its own; docs/intake.md)",
    )
    coalesce_max_points: int = Field(
        default=20_000,
        ge=1,
        description="a coalesced flush is sent at once when it holds this many points",
    )
    identity_cache_size: int = Field(
        default=100_000,
        ge=1,
        description="series identities (raw metric and tags -> canonical tags and sid) cached",
    )

    @property
    def port(self) -> int:
        return self.http_port if self.http_port is not None else DEFAULT_PORT

    def late_window_for(self, org: str) -> int:
        return self.late_window_overrides.get(org, self.late_window_seconds)

    @classmethod
    def load(cls) -> IntakeSettings:
        return cls()
