"""glibc malloc thresholds for every service process, set once at start.

Intake allocates and frees a few buffers the size of its body per request: the body as
read, the decompressed JSON (about 300 KB for 1 000 agent series), zlib's output blocks.
The stores allocate and free numpy columns the size of a consumer batch, several MB each
(rocks' merge of 2 000 messages, the archive's resolve before a Parquet write). With
glibc's defaults such buffers go back to the kernel when freed — blocks above the 128 KB
mmap threshold are unmapped, and free space at the top of a thread's heap is trimmed — so
the next request or batch page-faults them in again and the kernel zeroes every page:

- intake: about 100 minor faults and 0.3 to 0.5 ms of CPU per 300 KB body, as much as a
  quarter of everything else intake spends on that request (docs/benchmarks.md,
  ``bench_intake --no-malloc-tuning``);
- rocks: 170 000 to 280 000 minor faults in bench_peers' 4.32 M-point ingest, the kernel
  zeroing each page (``perf``: ``clear_page_erms``), and 0.4 to 0.5 s of system time
  (1.0 to 1.3 s in other runs) against 1.8 to 2.0 s of user time; 110 000 faults and
  0.33 s with 16 MB / 32 MB thresholds (docs/benchmarks.md, "Sixth session").
- Columns of a large batch (a catch-up, a Parquet write) reach tens of MB: above a 16 MB
  mmap threshold they were mapped afresh every time. With 64 MB / 128 MB, the system time
  of every strata up process in bench_peers' ingest fell from 1.35-1.8 s to 0.75-0.96 s
  (rocks 0.25-0.52 to 0.08-0.15 s, the archive 0.33-0.35 to 0.04-0.17 s), resident memory
  the same (1.30-1.32 GB in all) (docs/benchmarks.md, "Eighth session").

Raising both thresholds keeps freed buffers for the next request or batch. The cost is
memory held rather than returned: each malloc arena keeps up to :data:`TRIM_THRESHOLD` of
free space at its top, and blocks under :data:`MMAP_THRESHOLD` come from the arenas
(docs/operations.md, "Memory the allocator keeps").
"""

from __future__ import annotations

import ctypes
import logging
import platform

MMAP_THRESHOLD = 64 << 20  # bytes; glibc's default is 128 KB, adjusted upwards on frees
TRIM_THRESHOLD = 128 << 20  # bytes; glibc's default is 128 KB (twice the mmap threshold)

# mallopt(3) parameter numbers, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_malloc() -> bool:
    """Set both thresholds for the whole process; False (and nothing changed) when the C
    library is not glibc or refuses a value."""
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on error.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def tune_service_malloc(log: logging.Logger) -> None:
    """:func:`tune_malloc` at a service's start, noting in ``log`` when it does not apply."""
    if not tune_malloc():
        log.info("malloc thresholds left at their defaults (not glibc)")
