"""glibc malloc tuned for a server whose requests allocate and free the same big buffers.

A 10,000-row request allocates a few buffers of 80 KB to 1 MB (the body, numpy arrays, the
answer) from a thread of the worker's pool. glibc gives each such thread its own arena and,
when a big block at the top of it is freed, hands the pages back to the kernel (madvise) or
unmaps them; the next request faults them in again: 202 page faults and 0.8 ms of kernel time
per 10,000-row binary V2 infer, measured under gunicorn (bench/README.md). Fixed thresholds
keep those pages in the worker for the next request.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

TRIM_THRESHOLD_BYTES = 16 << 20  # free memory kept at the top of a heap before trimming
MMAP_THRESHOLD_BYTES = 4 << 20  # blocks from this size on get their own mapping (4 MiB bodies)
ARENA_MAX = 2  # 16 threads share 2 arenas: less memory held than one arena per thread


def tune() -> bool:
    """Set the thresholds in this process (its forks inherit them); False where not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return False  # musl has a mallopt that does nothing
    settings = (
        (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        (M_ARENA_MAX, ARENA_MAX),
    )
    return all(libc.mallopt(param, value) == 1 for param, value in settings)
