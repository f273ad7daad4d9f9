"""Postings include/exclude logic (pure)."""

from __future__ import annotations

import numpy as np
from pyroaring import BitMap64

from stores.inverted.postings import select, to_le_bytes, union

ALL = BitMap64([1, 2, 3, 4, 2**63 + 1])
PROD = BitMap64([1, 2, 2**63 + 1])
H1 = BitMap64([2, 4])


def test_empty_include_selects_every_series() -> None:
    assert select(ALL, [], []) == ALL


def test_include_is_an_intersection() -> None:
    assert select(ALL, [PROD], []) == PROD
    assert select(ALL, [PROD, H1], []) == BitMap64([2])
    assert select(ALL, [PROD, BitMap64()], []) == BitMap64()


def test_exclude_removes_any_carrier() -> None:
    assert select(ALL, [], [PROD]) == BitMap64([3, 4])
    assert select(ALL, [], [PROD, H1]) == BitMap64([3])
    assert select(ALL, [H1], [PROD]) == BitMap64([4])


def test_result_stays_within_the_metric() -> None:
    # Postings of a tag may list series outside the "all series" set of the range.
    assert select(BitMap64([1]), [BitMap64([1, 9])], []) == BitMap64([1])


def test_select_does_not_mutate_its_inputs() -> None:
    before = ALL.copy()
    select(ALL, [PROD], [H1])
    assert before == ALL


def test_union_and_wire_bytes() -> None:
    u = union([BitMap64([5]), BitMap64([1, 2**64 - 1])])
    assert np.frombuffer(to_le_bytes(u), dtype="<u8").tolist() == [1, 5, 2**64 - 1]
    assert to_le_bytes(BitMap64()) == b""
