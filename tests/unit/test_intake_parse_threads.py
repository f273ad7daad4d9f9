"""Request parsing runs in at most ``parse_threads`` threads (intake.app.Intake)."""

from __future__ import annotations

import gzip
import threading
import time

import anyio
import pytest

from intake.app import _V2, Intake
from intake.producer import PartitionCounts
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


def _where_series_bodies_parse(inline_max: int, body: bytes, encoding: str | None) -> str:
    """ "loop" or "thread": where ``Intake._parse_series`` parsed ``body``."""
    settings = IntakeSettings(kafka_bootstrap="127.0.0.1:1", inline_parse_max_bytes=inline_max)
    intake = Intake(settings)
    intake.partitions = PartitionCounts(settings.kafka_bootstrap, {settings.topic_points: 4})
    seen: list[int] = []
    parse = intake._parse_and_place

    def recording(*args: object) -> object:
        seen.append(threading.get_ident())
        return parse(*args)  # type: ignore[arg-type]

    intake._parse_and_place = recording  # type: ignore[assignment,method-assign]

    async def main() -> int:
        parsed, messages = await intake._parse_series(_V2, "org", body, encoding)
        assert parsed.accepted == 1 and len(messages) == 1
        return threading.get_ident()

    loop_thread = anyio.run(main)
    assert len(seen) == 1
    return "loop" if seen[0] == loop_thread else "thread"


def test_usual_bodies_parse_on_the_loop_and_large_ones_in_the_parse_thread() -> None:
    now = int(time.time())
    doc = b'{"series":[{"metric":"m","points":[{"timestamp":%d,"value":1}]}]}' % now
    padded = doc[:-1] + b" " * 4000 + b"}"  # 4 KB plain, a few dozen bytes gzipped
    assert _where_series_bodies_parse(1 << 20, padded, None) == "loop"
    assert _where_series_bodies_parse(1000, padded, None) == "thread"  # large as received
    small_wire = gzip.compress(padded)
    assert len(small_wire) < 1000
    assert _where_series_bodies_parse(1000, small_wire, "gzip") == "thread"  # large inflated
    assert _where_series_bodies_parse(0, doc, None) == "thread"  # 0: always the thread
