"""Partition-scoped archive reads on S3 (the real moto server): the one-level listing of
topic ids (``S3Store.children``, a delimiter listing), and reads naming a partition that
open only its objects and answer as unscoped reads do (the checks of
tests/unit/test_archive_partition.py, run on this backend)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from stores.archive.naming import Family, ingest_name
from stores.archive.objectstore import ObjectStore, S3Config, S3Store
from strata.servers import RunningServer
from tests.unit.test_archive_partition import (
    Archive,
    build,
    check_point_reads,
    check_sketch_reads,
)

pytestmark = pytest.mark.integration


def s3_store(moto: RunningServer) -> S3Store:
    store = S3Store(
        S3Config(
            endpoint_url=f"http://{moto.address}",
            bucket=f"b-{uuid.uuid4().hex[:10]}",
            prefix="tenant-x",  # keys below a bucket prefix, as in production setups
            access_key_id="testing",
            secret_access_key="testing",
            region="us-east-1",
        )
    )
    store.ensure_bucket()
    return store


@pytest.fixture(scope="module")
def archive(moto: RunningServer) -> Iterator[Archive]:
    store = s3_store(moto)
    yield build(store)
    store.close()


@pytest.mark.parametrize("resolution", ["raw", "1h"])
def test_point_reads_with_partition_on_s3(archive: Archive, resolution: str) -> None:
    check_point_reads(archive, resolution)


@pytest.mark.parametrize("resolution", ["raw", "1h"])
def test_sketch_reads_with_partition_on_s3(archive: Archive, resolution: str) -> None:
    check_sketch_reads(archive, resolution)


def derived(store: ObjectStore, prefix: str) -> list[str]:
    """What ``children`` must answer, from a full listing."""
    rests = [o.key[len(prefix) :] for o in store.list(prefix)]
    return sorted({r.split("/")[0] for r in rests if "/" in r})


def test_children_on_s3_match_the_listing(moto: RunningServer) -> None:
    s3 = s3_store(moto)
    try:
        keys = [ingest_name(Family.POINTS, tid, p, 0, 4) for tid in ("old", "new") for p in (1, 2)]
        keys += [ingest_name(Family.SERIES, "old", 1, 0, 4), "points/loose.parquet"]
        for key in keys:
            s3.put(key, b"x")
        assert s3.children("points/") == ["new", "old"]  # one delimiter listing
        assert s3.children("") == ["points", "series"]  # the bucket prefix is no segment
        assert s3.children("points/old/") == ["p0001", "p0002"]
        assert s3.children("nothing/") == []
        for prefix in ("points/", "", "points/old/", "series/"):
            assert s3.children(prefix) == derived(s3, prefix)
        with pytest.raises(ValueError):
            s3.children("points")
    finally:
        s3.close()
