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
    future_margin_seconds: int = Field(
        default=600,
        ge=0,
        description="how far ahead of its append time intake accepts a point's timestamp; "
        "a partition whose log start Kafka deleted before this store read it is complete "
        "from its first record's append time plus this (docs/rocks.md, Coverage)",
    )

    fold_delay_seconds: float = Field(
        default=600.0,
        ge=0,
        description="staged points are folded into hour blocks once their hour has been "
        "closed this long (late points mostly arrive before, so blocks are written once); "
        "an hour already folded into after it closed is folded again once its staged "
        "points are as many as those folded, or its oldest staged point waited this long",
    )
    fold_check_seconds: float = Field(
        default=10.0, gt=0, description="how often apply looks for staged chunks to fold"
    )
    staging_max_points: int = Field(
        default=20_000_000,
        ge=0,
        description="fold everything staged once more points than this are staged "
        "(bounds memory: about 60 bytes per staged point)",
    )

    @classmethod
    def load(cls) -> RocksSettings:
        return cls()
