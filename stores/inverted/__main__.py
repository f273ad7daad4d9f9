"""``python -m stores.inverted``: run one inverted-index instance until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from fastapi import FastAPI

from stores.inverted.api import create_app
from stores.inverted.index import InvertedIndex
from stores.inverted.settings import DEFAULT_PORT, InvertedSettings
from stores.runtime import run_store
from stores.runtime.ownership import Ownership
from stores.runtime.rocks import store_path


def main() -> int:
    settings = InvertedSettings.load()
    index = InvertedIndex(
        settings.topic_series, store_path(settings.data_dir, "inverted", settings.instance_id)
    )

    def app(ownership: Ownership) -> FastAPI:
        return create_app(index, ownership)

    return run_store(index, settings, app, DEFAULT_PORT)


if __name__ == "__main__":
    sys.exit(main())
