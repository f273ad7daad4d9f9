"""``python -m stores.ram``: run one RAM store instance until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from fastapi import FastAPI

from stores.ram.api import create_app
from stores.ram.settings import DEFAULT_PORT, RamSettings
from stores.ram.store import RamStore
from stores.runtime import run_store
from stores.runtime.ownership import Ownership
from stores.runtime.service import Companion
from stores.sketches.ram import RamSketchStore


def main() -> int:
    settings = RamSettings.load()
    store = RamStore(
        settings.topic_points,
        settings.window_seconds,
        replay_margin_seconds=settings.replay_margin_seconds,
    )

    # The sketches topic, in a second consumer loop of this process (stores/sketches/).
    sketches = Companion(
        RamSketchStore(
            settings.topic_sketches,
            settings.window_seconds,
            replay_margin_seconds=settings.replay_margin_seconds,
        ),
        Ownership(),
    )

    def app(ownership: Ownership) -> FastAPI:
        return create_app(store, ownership, sketches)

    return run_store(store, settings, app, DEFAULT_PORT, companions=[sketches])


if __name__ == "__main__":
    sys.exit(main())
