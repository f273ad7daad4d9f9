"""Settings of ``python -m stores.ram``."""

from __future__ import annotations

from pydantic import Field

from stores.runtime.settings import StoreSettings

DEFAULT_PORT = 8110


class RamSettings(StoreSettings):
    """``STRATA_*`` environment for the RAM store (docs/stores.md)."""

    window_hours: float = Field(default=3.0, gt=0, description="hours of points kept in memory")
    replay_margin_seconds: int = Field(
        default=600,
        ge=0,
        description="broker time replayed before the window start on assignment; must cover "
        "intake's future window (points stamped ahead of their append time)",
    )

    @property
    def window_seconds(self) -> int:
        return int(self.window_hours * 3600)

    @property
    def port(self) -> int:
        return self.http_port if self.http_port is not None else DEFAULT_PORT

    @classmethod
    def load(cls) -> RamSettings:
        return cls()
