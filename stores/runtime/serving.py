"""Refuse reads about a partition this instance does not serve at the moment of reading.

The query service routes by the registry, which is refreshed every couple of seconds: right
after a rebalance it may still send a read to the instance that just lost the partition (the
RAM store has dropped its points already; an index stops seeing the partition's new series),
or to one that was just given it and is still replaying. Answering such a read would return
a silently incomplete result. So a read names its partition, and the store answers 503
unless it serves that partition (owns it and advertises coverage for it) both before and
after reading, with no assignment change in between (the ownership epoch).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from stores.runtime.ownership import Ownership

Coverage = Callable[[Sequence[int], int], dict[int, list[int]]]


class NotServing(RuntimeError):
    """This instance does not serve the partition a read asked about (HTTP 503)."""


class ServingGuard:
    def __init__(
        self, ownership: Ownership, coverage: Coverage, clock: Callable[[], float] = time.time
    ) -> None:
        self._ownership = ownership
        self._coverage = coverage
        self._clock = clock

    def _check(self, partition: int) -> None:
        owned = [partition] if partition in self._ownership.partitions() else []
        if partition not in self._coverage(owned, int(self._clock())):
            raise NotServing(
                f"partition {partition} is not served here (moved to another instance, or "
                "still being replayed); ask the registry again"
            )

    @contextmanager
    def serving(self, partition: int | None) -> Iterator[None]:
        """Run a read about ``partition`` (None: the caller did not say, nothing checked).
        Raises :class:`NotServing` before the read, or after it if the partition moved
        meanwhile (the answer is then discarded)."""
        if partition is None:
            yield
            return
        epoch = self._ownership.epoch()
        self._check(partition)
        yield
        if self._ownership.epoch() != epoch:
            raise NotServing(f"partition {partition} was reassigned during the read; retry")
        self._check(partition)
