"""``python -m stores.ram``: run one RAM store instance until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from fastapi import FastAPI

from stores.ram.api import create_app
from stores.ram.settings import DEFAULT_PORT, RamSettings
from stores.ram.store import RamStore
from stores.runtime import run_store
from stores.runtime.ownership import Ownership


def main() -> int:
    settings = RamSettings.load()
    store = RamStore(
        settings.topic_points,
        settings.window_seconds,
        replay_margin_seconds=settings.replay_margin_seconds,
    )

    def app(ownership: Ownership) -> FastAPI:
        return create_app(store, ownership)

    return run_store(store, settings, app, DEFAULT_PORT)


if __name__ == "__main__":
    sys.exit(main())
