"""``python -m intake``: serve the intake API with settings from ``STRATA_*``."""

from __future__ import annotations

import logging

import uvicorn

from intake.app import create_app
from intake.settings import IntakeSettings
from strata.allocator import tune_service_malloc

log = logging.getLogger("intake")


def main() -> None:
    settings = IntakeSettings.load()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Request-sized buffers stay in the process instead of being page-faulted in again for
    # every request (strata/allocator.py).
    tune_service_malloc(log)
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )


if __name__ == "__main__":
    main()
