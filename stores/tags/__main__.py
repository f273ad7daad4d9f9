"""``python -m stores.tags``: run one tag-index instance until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from fastapi import FastAPI

from stores.runtime import run_store
from stores.runtime.ownership import Ownership
from stores.runtime.rocks import store_path
from stores.tags.api import create_app
from stores.tags.index import TagIndex
from stores.tags.settings import DEFAULT_PORT, TagsSettings


def main() -> int:
    settings = TagsSettings.load()
    index = TagIndex(
        settings.topic_series, store_path(settings.data_dir, "tags", settings.instance_id)
    )

    def app(ownership: Ownership) -> FastAPI:
        return create_app(index, ownership)

    return run_store(index, settings, app, DEFAULT_PORT)


if __name__ == "__main__":
    sys.exit(main())
