"""Typed settings, one object per service, read once from ``STRATA_*`` environment variables.

Services subclass :class:`CommonSettings` (those that query the stores,
:class:`StoreReaderSettings`); ``load()`` is called once in the service's ``__main__`` and the
object is passed down. Every field and default is listed in docs/operations.md and the
service pages it links.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Settings every service shares: where the data, Kafka, Redis and keys are."""

    model_config = SettingsConfigDict(env_prefix="STRATA_", extra="ignore", frozen=True)

    data_dir: Path = Field(default=Path("./strata-data"), description="root of all local state")
    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers")
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="registry/cache Redis")
    topic_points: str = "strata.points"
    topic_series: str = "strata.series"
    topic_sketches: str = "strata.sketches"
    topic_dead_letter: str = "strata.dead-letter"
    partitions: int = Field(default=4, ge=1, description="partitions per topic when created")
    keys_file: Path | None = Field(default=None, description="defaults to DATA_DIR/keys.json")
    log_level: str = "INFO"
    # Each service process serves HTTP (public API or internal read API) on one port.
    http_host: str = "127.0.0.1"
    http_port: int | None = Field(default=None, description="None = the service's default port")
    advertise_url: str | None = Field(default=None, description="URL others use to reach us")
    instance_id: str | None = Field(default=None, description="None = <kind>-<host>-<pid>")
    session_timeout_ms: int = Field(default=6000, description="consumer group session timeout")
    heartbeat_org: str = Field(
        default="strata-heartbeat",
        min_length=1,
        description="the reserved org of heartbeat keys: intake turns its submissions into "
        "completeness markers on every partition (docs/heartbeats.md)",
    )

    @property
    def keys_path(self) -> Path:
        return self.keys_file if self.keys_file is not None else self.data_dir / "keys.json"

    @classmethod
    def load(cls) -> CommonSettings:
        return cls()


class StoreReaderSettings(CommonSettings):
    """What the services that query the stores share (the query service and the heartbeat
    process's monitor evaluator): query limits, store discovery and reads, the monitors'
    Redis. Declared once so the two cannot disagree on a name or a default."""

    max_points: int = Field(
        default=300,
        ge=1,
        description="most points per series of a query or an evaluated monitor window "
        "(picks the rollup interval)",
    )
    max_series: int = Field(
        default=100_000,
        ge=1,
        description="most series one query or monitor query may aggregate (the query API "
        "answers 400 beyond it)",
    )
    store_timeout_seconds: float = Field(
        default=10.0, gt=0, description="timeout of each request to a store's read API"
    )
    registry_cache_seconds: float = Field(
        default=1.0, ge=0, description="how long discovered store instances are reused"
    )
    monitors_redis_url: str | None = Field(
        default=None,
        description="Redis holding the monitors (STRATA_MONITORS_REDIS_URL); REDIS_URL if unset",
    )

    @property
    def monitors_url(self) -> str:
        return self.monitors_redis_url or self.redis_url
