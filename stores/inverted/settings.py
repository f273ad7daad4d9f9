"""Settings of ``python -m stores.inverted``."""

from __future__ import annotations

from stores.runtime.settings import StoreSettings

DEFAULT_PORT = 8112


class InvertedSettings(StoreSettings):
    """``STRATA_*`` environment for the inverted index (docs/stores.md)."""

    @classmethod
    def load(cls) -> InvertedSettings:
        return cls()
