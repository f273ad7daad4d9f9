"""Concurrent requests sharing points messages (intake/coalesce.py), with a recorded produce.

The broker side (a real tansu) is covered by tests/integration/test_intake_api.py (two
concurrent requests land in one points message) and test_intake_broker_failure.py, which go
through the same code."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from intake.coalesce import Coalescer, Destination, merge
from intake.messages import MAX_MESSAGE_BYTES
from intake.producer import BrokerUnavailable, OutMessage
from strata.codec import PointBatch, decode_points

CPU: Destination = ("strata.points", 3, b"acme|cpu")
MEM: Destination = ("strata.points", 5, b"acme|mem")


def _batch(metric: str, start: int, n: int) -> PointBatch:
    return PointBatch(
        "acme",
        metric,
        np.arange(start, start + n, dtype=np.uint64),
        np.full(n, 1_700_000_000, np.int64),
        np.arange(start, start + n, dtype=np.float64),
    )


class Recorder:
    """The produce callable: records each call and answers as told."""

    def __init__(self, fail: Exception | None = None, delay: float = 0.0) -> None:
        self.calls: list[list[OutMessage]] = []
        self.fail = fail
        self.delay = delay

    async def __call__(self, messages: list[OutMessage]) -> None:
        self.calls.append(messages)
        await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail


def test_requests_within_the_window_share_one_message_per_destination() -> None:
    produce = Recorder()
    sent: list[int] = []
    coalescer = Coalescer(produce, window=0.05, max_points=10_000, on_sent=sent.append)
    announce = OutMessage("strata.series", 1, b"acme|cpu", b"announcement")

    async def run() -> None:
        await asyncio.gather(
            coalescer.send([(CPU, _batch("cpu", 0, 3)), (MEM, _batch("mem", 0, 2))], [announce]),
            coalescer.send([(CPU, _batch("cpu", 3, 4))], []),
        )

    asyncio.run(run())
    assert len(produce.calls) == 1
    by_key = {m.key: m for m in produce.calls[0] if m.topic == "strata.points"}
    assert set(by_key) == {b"acme|cpu", b"acme|mem"}
    cpu = by_key[b"acme|cpu"]
    assert (cpu.topic, cpu.partition) == ("strata.points", 3)
    assert decode_points(cpu.value).sid.tolist() == list(range(7))  # both requests, in order
    assert len(decode_points(by_key[b"acme|mem"].value)) == 2
    assert produce.calls[0][-1] is announce
    assert sent == [3]


def test_a_failed_produce_fails_every_request_of_the_flush() -> None:
    produce = Recorder(fail=BrokerUnavailable("down", "ack_timeout"))
    coalescer = Coalescer(produce, window=0.05, max_points=10_000)

    async def run() -> list[BaseException | None]:
        outcomes = await asyncio.gather(
            coalescer.send([(CPU, _batch("cpu", 0, 3))], []),
            coalescer.send([(MEM, _batch("mem", 0, 3))], []),
            return_exceptions=True,
        )
        return list(outcomes)

    results = asyncio.run(run())
    assert len(produce.calls) == 1
    assert all(isinstance(r, BrokerUnavailable) for r in results)


def test_a_full_flush_goes_at_once_and_the_next_request_opens_another() -> None:
    produce = Recorder()
    coalescer = Coalescer(produce, window=30.0, max_points=5)  # the window never ends here

    async def run() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.wait_for(
            asyncio.gather(
                coalescer.send([(CPU, _batch("cpu", 0, 3))], []),
                coalescer.send([(CPU, _batch("cpu", 3, 3))], []),  # 6 >= 5: sent now
            ),
            5,
        )
        elapsed = loop.time() - t0
        pending = asyncio.ensure_future(coalescer.send([(CPU, _batch("cpu", 6, 1))], []))
        await asyncio.sleep(0.05)
        assert not pending.done()  # a new flush, waiting for its window
        await coalescer.close()  # shutdown sends what is collected
        await asyncio.wait_for(pending, 5)
        return elapsed

    assert asyncio.run(run()) < 5
    assert [sum(len(decode_points(m.value)) for m in call) for call in produce.calls] == [6, 1]


def test_window_zero_sends_each_request_on_its_own() -> None:
    produce = Recorder()
    coalescer = Coalescer(produce, window=0, max_points=10_000)

    async def run() -> None:
        await asyncio.gather(
            coalescer.send([(CPU, _batch("cpu", 0, 3))], []),
            coalescer.send([(CPU, _batch("cpu", 3, 3))], []),
        )

    asyncio.run(run())
    assert [len(call) for call in produce.calls] == [1, 1]


def test_a_request_whose_client_left_does_not_cancel_the_others() -> None:
    produce = Recorder(delay=0.1)
    coalescer = Coalescer(produce, window=0.01, max_points=10_000)

    async def run() -> None:
        leaving = asyncio.ensure_future(coalescer.send([(CPU, _batch("cpu", 0, 3))], []))
        staying = asyncio.ensure_future(coalescer.send([(CPU, _batch("cpu", 3, 3))], []))
        await asyncio.sleep(0.05)  # the flush is producing
        leaving.cancel()
        await asyncio.wait_for(staying, 5)
        assert staying.exception() is None

    asyncio.run(run())
    assert len(produce.calls) == 1


def test_a_merged_batch_over_the_message_limit_is_cut() -> None:
    produce = Recorder()
    n = MAX_MESSAGE_BYTES // 24  # two of these cannot share one message
    coalescer = Coalescer(produce, window=0.01, max_points=10 * n)

    async def run() -> None:
        await asyncio.gather(
            coalescer.send([(CPU, _batch("cpu", 0, n))], []),
            coalescer.send([(CPU, _batch("cpu", n, n))], []),
        )

    asyncio.run(run())
    (call,) = produce.calls
    assert len(call) > 1 and all(len(m.value) <= MAX_MESSAGE_BYTES for m in call)
    sids = np.concatenate([decode_points(m.value).sid for m in call])
    assert np.array_equal(sids, np.arange(2 * n, dtype=np.uint64))


def test_merge_keeps_a_single_batch_as_it_is() -> None:
    one = _batch("cpu", 0, 3)
    assert merge([one]) is one
    with pytest.raises(IndexError):
        merge([])
