"""Both index stores' apply against a plain model of what they promise, on random batches
whose sids repeat (within a message, across messages of one apply, across applies) and
sometimes collide (one sid, two identities), with rows of several buckets per message.

Tag index: a sid's first identity wins; a later different identity (other org, metric or
tags; type and interval may change) is recorded once as a collision and not catalogued;
the metric's and each tag's last-seen bucket is the greatest bucket of a catalogued row.
Inverted index: every (tag or "all", bucket) lists each series announced under it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stores.inverted import keys as inverted_keys
from stores.inverted.index import InvertedIndex
from stores.runtime.rocks import scan_prefix
from stores.runtime.store import Record
from stores.tags import keys as tag_keys
from stores.tags.index import TagIndex
from stores.tags.keys import Identity
from strata.codec import SeriesBatch
from strata.model import INDEX_BUCKET_SECONDS, SID_DTYPE, TS_DTYPE, MetricType

T0 = 1_700_000_000 - 1_700_000_000 % INDEX_BUCKET_SECONDS
ORG, METRICS = "acme", ("cpu", "mem")
VOCABULARY = ("env:prod", "env:dev", "host:a", "host:b", "host:c", "role:web", "zone:1")


def random_batches(seed: int, messages: int) -> list[list[SeriesBatch]]:
    """Applies of 1-3 messages, each of one metric, 1-12 rows from a pool of 15 sids."""
    rng = np.random.default_rng(seed)
    applies: list[list[SeriesBatch]] = []
    left = messages
    while left > 0:
        group = []
        for _ in range(min(left, int(rng.integers(1, 4)))):
            n = int(rng.integers(1, 13))
            sids = rng.integers(1, 16, n)
            # Mostly the tags a sid always has; sometimes others (a collision).
            tags = tuple(
                tuple(sorted({VOCABULARY[(s + k) % len(VOCABULARY)] for k in range(s % 3 + 1)}))
                if rng.random() > 0.1
                else tuple(sorted(set(rng.choice(VOCABULARY, 2).tolist())))
                for s in sids.tolist()
            )
            group.append(
                SeriesBatch(
                    ORG,
                    METRICS[int(rng.integers(0, 2))] if rng.random() < 0.1 else METRICS[0],
                    sids.astype(SID_DTYPE),
                    (T0 + rng.integers(0, 5, n) * INDEX_BUCKET_SECONDS).astype(TS_DTYPE),
                    rng.integers(0, 4, n).astype(np.uint8),
                    rng.integers(0, 3, n).astype(np.uint32) * 10,
                    tags,
                )
            )
            left -= 1
        applies.append(group)
    return applies


def tag_model(applies: list[list[SeriesBatch]]) -> tuple[dict[bytes, bytes], int]:
    stored: dict[int, Identity] = {}
    collisions: set[bytes] = set()
    last: dict[bytes, int] = {}
    for group in applies:
        for b in group:
            for i, sid in enumerate(b.sid.tolist()):
                ident = Identity(
                    b.org, b.metric, MetricType(int(b.mtype[i])), int(b.interval[i]), b.tags[i]
                )
                first = stored.setdefault(sid, ident)
                if not first.same_series(ident):
                    collisions.add(tag_keys.collision_key(sid, ident))
                    continue
                bucket = int(b.bucket[i])
                for key in (
                    tag_keys.metric_key(b.org, b.metric),
                    *(tag_keys.tag_key(b.org, b.metric, t) for t in b.tags[i]),
                ):
                    last[key] = max(bucket, last.get(key, bucket))
    out = {tag_keys.series_key(s): ident.encode() for s, ident in stored.items()}
    out.update({k: tag_keys.bucket_value(v) for k, v in last.items()})
    return out, len(collisions)


def test_tag_index_apply_matches_the_model(tmp_path: Path) -> None:
    seen_collisions = 0
    for seed in range(8):
        applies = random_batches(seed, 40)
        index = TagIndex("series", tmp_path / f"tags-{seed}")
        offset = 0
        for group in applies:
            index.apply([Record(0, offset + k, 0, b) for k, b in enumerate(group)])
            offset += len(group)
        expected, collisions = tag_model(applies)
        got = {
            bytes(k): bytes(v)
            for prefix in (tag_keys.SERIES, tag_keys.METRIC, tag_keys.TAG)
            for k, v in scan_prefix(index._db, prefix)
        }
        assert got == expected, f"seed {seed}"
        assert index.collisions == collisions, f"seed {seed}"
        seen_collisions += collisions
        assert sum(1 for _ in scan_prefix(index._db, tag_keys.COLLISION)) == collisions
        # A redelivery of everything changes nothing.
        for group in applies:
            index.apply([Record(1, k, 0, b) for k, b in enumerate(group)])
        again = {
            bytes(k): bytes(v)
            for prefix in (tag_keys.SERIES, tag_keys.METRIC, tag_keys.TAG)
            for k, v in scan_prefix(index._db, prefix)
        }
        assert again == expected and index.collisions == collisions
        index.close()
    assert seen_collisions > 0  # the generator does make them


def test_inverted_index_apply_matches_the_model(tmp_path: Path) -> None:
    for seed in range(8):
        applies = random_batches(100 + seed, 40)
        index = InvertedIndex("series", tmp_path / f"inverted-{seed}")
        offset = 0
        expected: dict[tuple[str, str, int], set[int]] = {}
        for group in applies:
            index.apply([Record(0, offset + k, 0, b) for k, b in enumerate(group)])
            offset += len(group)
            for b in group:
                for i, sid in enumerate(b.sid.tolist()):
                    for tag in (inverted_keys.ALL_SERIES, *b.tags[i]):
                        expected.setdefault((b.metric, tag, int(b.bucket[i])), set()).add(sid)
        listed = 0
        for metric in METRICS:
            for tag in (inverted_keys.ALL_SERIES, *VOCABULARY):
                for k in range(5):
                    bucket = T0 + k * INDEX_BUCKET_SECONDS
                    ordinals = index.postings(ORG, metric, tag, bucket, bucket)
                    got = set(index.sids_of(ORG, metric, ordinals).tolist())
                    assert got == expected.get((metric, tag, bucket), set()), (seed, tag, k)
                    listed += len(got)
        assert listed == sum(map(len, expected.values())) > 0
        index.close()
