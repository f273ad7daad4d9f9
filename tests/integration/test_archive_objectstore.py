"""One object-store contract, run against the local directory and S3 on the real moto server."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stores.archive.objectstore import (
    LocalDirStore,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    ObjectStoreUnavailable,
    S3Config,
    S3Store,
)
from strata.servers import RunningServer, free_port

pytestmark = pytest.mark.integration


def s3_config(endpoint: str, bucket: str, **kw: object) -> S3Config:
    return S3Config(
        endpoint_url=endpoint,
        bucket=bucket,
        prefix="tenant-x",
        access_key_id="testing",
        secret_access_key="testing",
        region="us-east-1",
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalDirStore(tmp_path / "objects")
        return
    moto: RunningServer = request.getfixturevalue("moto")
    s3 = S3Store(
        s3_config(
            f"http://{moto.address}",
            f"b-{uuid.uuid4().hex[:10]}",
            multipart_threshold_bytes=5 * 2**20,
            multipart_chunk_bytes=5 * 2**20,
        )
    )
    s3.ensure_bucket()
    yield s3
    s3.close()


class TestObjectStoreContract:
    def test_put_get_list_delete(self, store: ObjectStore) -> None:
        store.put("points/t/p0001/a.parquet", b"one")
        store.put("points/t/p0002/b.parquet", b"two")
        store.put("series/t/p0001/c.parquet", b"")
        assert store.get("points/t/p0001/a.parquet") == b"one"
        assert store.get("series/t/p0001/c.parquet") == b""
        assert [o.key for o in store.list("points/")] == [
            "points/t/p0001/a.parquet",
            "points/t/p0002/b.parquet",
        ]
        assert [(o.key, o.size) for o in store.list("points/t/p0002/")] == [
            ("points/t/p0002/b.parquet", 3)
        ]
        assert store.list("nothing/") == []
        store.delete("points/t/p0001/a.parquet")
        store.delete("points/t/p0001/a.parquet")  # missing: no error
        with pytest.raises(ObjectNotFound):
            store.get("points/t/p0001/a.parquet")
        assert [o.key for o in store.list("")] == [
            "points/t/p0002/b.parquet",
            "series/t/p0001/c.parquet",
        ]

    def test_put_replaces_whole_objects(self, store: ObjectStore) -> None:
        store.put("k/x", b"a" * 1000)
        store.put("k/x", b"b")
        assert store.get("k/x") == b"b"
        assert [o.size for o in store.list("k/")] == [1]

    def test_tail_reads_only_the_end(self, store: ObjectStore) -> None:
        data = bytes(range(256)) * 40
        store.put("t/obj", data)
        store.put("t/empty", b"")
        assert store.tail("t/obj", 1) == data[-1:]
        assert store.tail("t/obj", 300) == data[-300:]
        assert store.tail("t/obj", len(data)) == data
        assert store.tail("t/obj", len(data) + 1000) == data  # larger than the object
        assert store.tail("t/empty", 8) == b""
        with pytest.raises(ObjectNotFound):
            store.tail("t/missing", 8)

    def test_large_objects(self, store: ObjectStore) -> None:
        # Above the S3 multipart threshold (5 MiB in this fixture): several parts.
        data = bytes(range(256)) * (6 * 2**20 // 256 + 7)
        store.put("big/object", data)
        assert store.get("big/object") == data


def test_local_rejects_escaping_keys(tmp_path: Path) -> None:
    store = LocalDirStore(tmp_path)
    with pytest.raises(ObjectStoreError):
        store.put("../outside", b"x")


def test_s3_unreachable_is_retried_then_unavailable() -> None:
    sleeps: list[float] = []
    s3 = S3Store(
        s3_config(f"http://127.0.0.1:{free_port()}", "b", attempts=3, timeout_seconds=1.0),
        sleep=sleeps.append,
    )
    started = time.monotonic()
    with pytest.raises(ObjectStoreUnavailable):
        s3.put("k", b"x")
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0] * 0.5  # backoff grows (with jitter)
    assert time.monotonic() - started < 20


def test_s3_missing_bucket_is_not_retried(moto: RunningServer) -> None:
    sleeps: list[float] = []
    s3 = S3Store(s3_config(f"http://{moto.address}", "no-such-bucket-x"), sleep=sleeps.append)
    with pytest.raises(ObjectStoreError) as err:
        s3.put("k", b"x")
    assert not isinstance(err.value, ObjectStoreUnavailable) and sleeps == []
