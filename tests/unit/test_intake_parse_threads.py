"""Request parsing runs in at most ``parse_threads`` threads (intake.app.Intake)."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from intake.app import Intake
from intake.settings import IntakeSettings


def _peak_concurrency(parse_threads: int, requests: int) -> tuple[int, set[int]]:
    intake = Intake(IntakeSettings(kafka_bootstrap="127.0.0.1:1", parse_threads=parse_threads))
    lock = threading.Lock()
    running = 0
    peak = 0
    threads: set[int] = set()

    def parse() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            threads.add(threading.get_ident())
        time.sleep(0.05)
        with lock:
            running -= 1

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(requests):
                tg.start_soon(intake._parse_thread, parse)

    anyio.run(main)
    return peak, threads


@pytest.mark.parametrize("parse_threads", [1, 3])
def test_parsing_is_bounded_by_parse_threads(parse_threads: int) -> None:
    peak, threads = _peak_concurrency(parse_threads, requests=8)
    assert peak == parse_threads
    assert threading.get_ident() not in threads  # never on the event loop's thread


def test_default_is_one_parse_thread() -> None:
    assert IntakeSettings().parse_threads == 1
    with pytest.raises(ValueError, match="parse_threads"):
        IntakeSettings(parse_threads=0)
