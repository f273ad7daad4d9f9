"""glibc malloc thresholds for the intake process, set once at start (``intake.__main__``).

Every request allocates and frees a few buffers the size of its body: the body as read, the
decompressed JSON (about 300 KB for 1 000 agent series), zlib's output blocks. With glibc's
defaults, in the worker threads where intake decompresses and parses, such buffers go back
to the kernel when freed — blocks above the 128 KB mmap threshold are unmapped, and free
space at the top of the thread's heap is trimmed — so the next request page-faults them in
again: about 100 minor faults and 0.3 to 0.5 ms of CPU per 300 KB body, as much as a quarter of
everything else intake spends on that request (docs/benchmarks.md, ``bench_intake
--no-malloc-tuning``). Raising both thresholds keeps freed buffers for the next request.

The cost is memory held rather than returned: each malloc arena keeps up to
:data:`TRIM_THRESHOLD` of free space at its top, and blocks under :data:`MMAP_THRESHOLD`
(every v2 body, whose decompressed limit is 5 MB; most v1 bodies) come from the arenas.
"""

from __future__ import annotations

import ctypes
import platform

MMAP_THRESHOLD = 16 << 20  # bytes; glibc's default is 128 KB, adjusted upwards on frees
TRIM_THRESHOLD = 32 << 20  # bytes; glibc's default is 128 KB (twice the mmap threshold)

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
