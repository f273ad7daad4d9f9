"""A request's delivery callback (intake.producer._Acks): the request's future settles
once, after the last acknowledgement or at the first failure, from the poll thread."""

from __future__ import annotations

import asyncio
import threading

import pytest
from confluent_kafka import KafkaError

from intake.producer import _Acks, _DeliveryFailed


def _from_thread(acks: _Acks, errors: list[KafkaError | None]) -> None:
    def run() -> None:
        for err in errors:
            acks(err, None)

    t = threading.Thread(target=run)
    t.start()
    t.join()


def test_the_future_settles_after_the_last_acknowledgement() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        acks = _Acks(loop, fut, 3)
        _from_thread(acks, [None, None])
        await asyncio.sleep(0.05)
        assert not fut.done()
        _from_thread(acks, [None])
        await asyncio.wait_for(fut, 1.0)

    asyncio.run(main())


def test_the_first_failure_settles_it_and_later_callbacks_are_ignored() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        acks = _Acks(loop, fut, 3)
        woken = 0
        real = loop.call_soon_threadsafe

        def counting(*args: object) -> object:
            nonlocal woken
            woken += 1
            return real(*args)  # type: ignore[arg-type]

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign, assignment]
        _from_thread(acks, [None, KafkaError(KafkaError._MSG_TIMED_OUT), None])
        with pytest.raises(_DeliveryFailed):
            await asyncio.wait_for(fut, 1.0)
        assert woken == 1

    asyncio.run(main())
