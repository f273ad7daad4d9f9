"""Rocks key layout: byte order equals (kind, sid, time) order; day shard names."""

from __future__ import annotations

import numpy as np
import pytest

from stores.rocks import layout


def test_keys_sort_like_sid_then_time_including_negative_times() -> None:
    sids = np.array([0, 1, 2**63, 2**64 - 1, 1, 1, 1], np.uint64)
    starts = np.array([5, 5, 5, 5, -7200, 0, 2**62], np.int64)
    keys = layout.keys(layout.RAW, sids, starts)
    assert all(len(k) == layout.KEY_SIZE for k in keys)
    by_bytes = sorted(range(len(keys)), key=lambda i: keys[i])
    by_value = sorted(range(len(keys)), key=lambda i: (int(sids[i]), int(starts[i])))
    assert by_bytes == by_value
    assert layout.parse_key(keys[4]) == (b"r", 1, -7200)


def test_kinds_are_contiguous() -> None:
    sid = np.array([2**64 - 1], np.uint64)
    start = np.array([2**62], np.int64)
    low = np.array([0], np.uint64)
    neg = np.array([-(2**62)], np.int64)
    assert layout.keys(layout.HOURS, sid, start)[0] < layout.keys(layout.MINUTES, low, neg)[0]
    assert layout.keys(layout.MINUTES, sid, start)[0] < layout.keys(layout.RAW, low, neg)[0]


def test_shard_names_round_trip() -> None:
    day = 1_763_769_600 // 86400  # 2025-11-22
    assert layout.shard_name(day) == "d20251122"
    assert layout.shard_day("d20251122") == day
    assert layout.is_shard("d20251122") and not layout.is_shard("default")
    for bad in ("d2025112", "x20251122", "d20251340"):
        with pytest.raises(layout.NotAShard):
            layout.shard_day(bad)


def test_oldest_kept_day_keeps_full_retention_days() -> None:
    now = 1_763_769_600 + 5  # just after midnight
    assert layout.oldest_kept_day(now, 15) == now // 86400 - 15
