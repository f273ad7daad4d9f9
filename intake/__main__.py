"""``python -m intake``: serve the intake API with settings from ``STRATA_*``."""

from __future__ import annotations

import logging

import uvicorn

from intake.allocator import tune_malloc
from intake.app import create_app
from intake.settings import IntakeSettings

log = logging.getLogger("intake")


def main() -> None:
    settings = IntakeSettings.load()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Request-sized buffers stay in the process instead of being page-faulted in again for
    # every request (intake/allocator.py).
    if not tune_malloc():
        log.info("malloc thresholds left at their defaults (not glibc)")
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )


if __name__ == "__main__":
    main()
