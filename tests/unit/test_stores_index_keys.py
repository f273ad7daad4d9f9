"""Index key encodings: order-preserving numbers, unambiguous prefixes, value round-trips."""

from __future__ import annotations

import pytest

from stores.inverted import keys as inv
from stores.runtime.applied import applied_offsets, offset_key
from stores.runtime.rocks import i64, read_i64, read_u64, u64
from stores.runtime.store import Record
from stores.tags import keys as tags
from stores.tags.keys import CorruptValue, Identity
from strata.model import MetricType


@pytest.mark.parametrize("values", [[-(2**63), -5, -1, 0, 1, 3600, 2**63 - 1]])
def test_signed_encoding_sorts_like_numbers(values: list[int]) -> None:
    encoded = [i64(v) for v in values]
    assert encoded == sorted(encoded)
    assert [read_i64(e) for e in encoded] == values
    assert all(len(e) == 8 for e in encoded)


def test_unsigned_encoding_is_fixed_width_big_endian() -> None:
    assert u64(1) == b"\x00" * 7 + b"\x01"
    assert read_u64(u64(2**64 - 1)) == 2**64 - 1
    assert tags.series_key(0x0102) == b"S" + b"\x00" * 6 + b"\x01\x02"


def test_prefixes_of_different_orgs_never_overlap() -> None:
    # "a" must not prefix-match "ab": the separator closes the name.
    assert not tags.metric_key("ab", "m").startswith(tags.metric_prefix("a"))
    assert not tags.tag_key("a", "mx", "t").startswith(tags.tag_prefix("a", "m"))
    assert not inv.postings_key("a", "m", "env:prod", 0).startswith(
        inv.postings_prefix("a", "m", "env")
    )


def test_postings_keys_sort_by_bucket_within_a_tag() -> None:
    ks = [inv.postings_key("o", "m", "t", b) for b in (0, 3600, 7200, 10 * 3600)]
    assert ks == sorted(ks)
    assert [inv.bucket_of(k) for k in ks] == [0, 3600, 7200, 36000]
    # The all-series entry has its own prefix, distinct from any real tag.
    # Layout 2 (ordinal postings) uses B; layout 1 used P.
    assert inv.postings_prefix("o", "m", inv.ALL_SERIES) == b"Bo\x00m\x00\x00"


def test_identity_round_trips_and_compares_by_series() -> None:
    ident = Identity("acme", "cpu.user", MetricType.RATE, 10, ("env:prod", "host:é"))
    assert Identity.decode(ident.encode()) == ident
    other_type = Identity("acme", "cpu.user", MetricType.GAUGE, 0, ident.tags)
    assert ident.same_series(other_type)
    assert not ident.same_series(Identity("acme", "cpu.user", MetricType.RATE, 10, ("x",)))
    assert tags.collision_key(1, ident) != tags.collision_key(1, other_type)
    with pytest.raises(CorruptValue):
        Identity.decode(b"\x01")


def test_applied_offsets_record_next_offset_per_partition() -> None:
    records = [Record(0, 5, 0, None), Record(0, 9, 0, None), Record(2, 1, 0, None)]
    assert applied_offsets(records) == {offset_key(0): u64(10), offset_key(2): u64(2)}
