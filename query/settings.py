"""Query service settings: :class:`strata.settings.StoreReaderSettings` (the fields it
shares with the monitor evaluator) plus the query's own.

Read once in ``query.__main__`` and passed down; every field is listed in docs/query.md.
"""

from __future__ import annotations

from pydantic import Field

from strata.settings import StoreReaderSettings

DEFAULT_PORT = 8101


class QuerySettings(StoreReaderSettings):
    """``STRATA_*`` environment for ``python -m query``."""

    query_budget_seconds: float = Field(
        default=30.0,
        gt=0,
        description="time budget of one API request: store calls are capped by what is "
        "left and none starts after it (504)",
    )
    coverage_margin_seconds: int = Field(
        default=30,
        ge=0,
        description="seconds taken off the start of a RAM store's advertised coverage (its "
        "window keeps sliding between publishing and reading); older tiers serve them",
    )
    retry_after_seconds: int = Field(default=1, ge=0, description="Retry-After sent with 503")
    cache_enabled: bool = Field(
        default=True, description="cache complete tier segment reads in Redis (query/cache.py)"
    )
    query_cache_url: str | None = Field(
        default=None,
        description="Redis of the result cache (STRATA_QUERY_CACHE_URL); REDIS_URL if unset",
    )
    # Must exceed intake's late-data window (default 3600 s) plus its future window: a
    # chunk is immutable only once no accepted point can still land in it. Until heartbeat
    # watermarks exist (issue 6) this is the only completeness signal.
    cache_settle_seconds: int = Field(
        default=4500,
        ge=0,
        description="a chunk that ended this long ago is complete and may be cached",
    )
    cache_ttl_seconds: int = Field(default=86400, ge=1, description="lifetime of a cached chunk")
    cache_timeout_seconds: float = Field(
        default=0.05, gt=0, description="socket timeout of every cache Redis call"
    )
    cache_retry_seconds: float = Field(
        default=5.0, ge=0, description="after a cache Redis error, answer uncached this long"
    )

    @property
    def cache_url(self) -> str:
        return self.query_cache_url or self.redis_url

    @property
    def port(self) -> int:
        return self.http_port if self.http_port is not None else DEFAULT_PORT

    @classmethod
    def load(cls) -> QuerySettings:
        return cls()
