"""Settings of ``python -m stores.rocks`` (documented in docs/rocks.md)."""

from __future__ import annotations

from pydantic import Field

from stores.runtime.settings import StoreSettings

DEFAULT_PORT = 8113


class RocksSettings(StoreSettings):
    """``STRATA_*`` environment for the rocks store."""

    retention_days: int = Field(
        default=15,
        ge=1,
        description="full days kept besides today; older day shards are dropped and older "
        "points are dropped at apply (counted)",
    )
    retention_check_seconds: float = Field(
        default=60.0, gt=0, description="how often retention runs while consuming"
    )

    @classmethod
    def load(cls) -> RocksSettings:
        return cls()
