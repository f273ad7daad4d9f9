"""Settings of ``python -m stores.tags``."""

from __future__ import annotations

from stores.runtime.settings import StoreSettings

DEFAULT_PORT = 8111


class TagsSettings(StoreSettings):
    """``STRATA_*`` environment for the tag index (docs/stores.md)."""

    @classmethod
    def load(cls) -> TagsSettings:
        return cls()
