"""strata.allocator: with its malloc thresholds, request-sized buffers freed in a worker
thread are reused by the next request instead of being page-faulted in again.

Each case runs in a fresh interpreter (the thresholds are process-wide): a worker thread
allocates, fills and frees 300 KB buffers the way a request's decompressed body is, and the
minor page faults of the loop are counted with and without :func:`tune_malloc`.
"""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

CHILD = """
import resource, sys, zlib
from concurrent.futures import ThreadPoolExecutor
from strata.allocator import tune_malloc
if sys.argv[1] == "tuned":
    assert tune_malloc() and tune_malloc()  # succeeds, and may be repeated
body = b'{"metric":"cpu.usage_user","tags":["region:eu-west-1"]},' * 5500  # ~300 KB
wire = zlib.compress(body)
def requests(n):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        d = zlib.decompressobj()
        out = d.decompress(wire, 10**7)
        assert len(out) == len(body)
        copy = bytes(bytearray(out))
        del out, copy, d
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
with ThreadPoolExecutor(1) as pool:
    pool.submit(requests, 20).result()  # warm up: arenas and thresholds settle
    print(pool.submit(requests, 200).result())
"""

BATCHES = """
import resource, sys
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from strata.allocator import tune_malloc
if sys.argv[1] == "tuned":
    assert tune_malloc()
lo, hi, n = map(int, sys.argv[2:5])
sizes = np.random.default_rng(1).integers(lo, hi, n)  # rows per batch
def batches(sizes):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for n in sizes:  # a store's apply: columns, a sort, a gather, a conversion
        ts = np.arange(n, dtype=np.int64)
        order = np.argsort(ts % 977, kind="stable")
        value = ts[order].astype(np.float64)
        del ts, order, value
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
with ThreadPoolExecutor(1) as pool:
    pool.submit(batches, sizes[:20]).result()  # warm up
    print(pool.submit(batches, sizes[20:]).result())
"""

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")


def faults(mode: str, child: str = CHILD, *args: int) -> int:
    out = subprocess.run(
        [sys.executable, "-c", child, mode, *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(out.stdout)


@glibc
def test_tuned_threads_reuse_freed_body_buffers() -> None:
    default, tuned = faults("default"), faults("tuned")
    # 200 requests of ~300 KB buffers: untuned, each request faults its pages in again.
    assert default > 200 * 50
    assert tuned < default / 20


@glibc
@pytest.mark.parametrize(
    ("shape", "min_default", "max_ratio"),
    [
        # 200 batches of 0.8-4.8 MB columns: untuned, pages are mapped and zeroed again for
        # every batch (350-800 faults per batch here); tuned, a few hundred in all.
        ((100_000, 600_000, 220), 200 * 200, 1 / 20),
        # 30 batches of 4-24 MB columns, as rocks and the archive apply while catching up:
        # above a 16 MB mmap threshold they were mapped and zeroed again for every batch
        # (51 618 faults against 63 082 untuned); tuned, about 3 000.
        ((500_000, 3_000_000, 50), 30 * 500, 1 / 4),
    ],
    ids=["batch-columns", "large-batch-columns"],
)
def test_tuned_threads_reuse_freed_batch_columns(
    shape: tuple[int, int, int], min_default: int, max_ratio: float
) -> None:
    default, tuned = faults("default", BATCHES, *shape), faults("tuned", BATCHES, *shape)
    assert default > min_default
    assert tuned < default * max_ratio
