"""The C allocator's settings for CPU runs: freed memory kept for the next step, not handed back.

glibc's ``malloc`` serves a block of 128 KiB or more (the gate activations of a GRU over 40
steps, 2 MB; a wide layer's activations at a large batch) with a fresh ``mmap`` and unmaps it
when it is freed, and it hands the free memory at the top of its heap back to the system once
there is more than 128 KiB of it. PyTorch frees a step's temporaries as the step ends, so the
next step maps the same memory again and takes a page fault for every page of it, on the thread
the step is timed on: a cost of the allocator, not of the model or the optimizer, and one that
depends on what else is allocated (the gradient monitor's kept records moved a GRU step's time
by 2-3%). ``keep_freed_memory`` raises both thresholds, so that a step's large blocks come from
the heap and stay there for the next step. Measured on this project's 2-core machine, one thread,
batch 64, the median of 15 blocks of 20 steps in a fresh process each, glibc's defaults against
these settings, two processes each: the 20x256 MLP 6.3 and 6.8 ms against 5.7 and 5.6 ms a step,
the health benchmark's CNN 4.5 and 5.2 against 4.4 and 4.2 ms, ``mnist1d_gru``'s network 5.8
and 6.2 against 5.5 and 5.5 ms; the default suite's 8x64 MLP, whose blocks are small, 0.42
against 0.41 ms. Raising only one of the two thresholds was slower than the defaults (a GRU
step 6.4-7.7 ms): large blocks from a heap that is still trimmed.

The process keeps the memory its largest step needed (for a sweep worker, its largest cell) for
as long as it runs. The setting is process-wide and made once; it does nothing outside glibc
(macOS, musl), where ``keep_freed_memory`` returns ``None``. The runner records what it did in
each run's environment (``malloc``).
"""

from __future__ import annotations

import ctypes
import functools

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory"]

# mallopt's parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# The largest mmap threshold glibc accepts on 64-bit systems is HEAP_MAX_SIZE / 2 (32 MiB):
# blocks below it come from the heap.
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024


@functools.cache
def keep_freed_memory() -> str | None:
    """Raise glibc's mmap and trim thresholds for this process (once); returns what was set,
    for the run's environment, or ``None`` where the C library is not glibc or refused."""
    try:
        libc = ctypes.CDLL(None)  # this process's own symbols: the C library it runs on
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # only glibc has it: other C libraries' mallopt differs or is absent
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        return None
    return f"glibc mallopt: mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold {TRIM_THRESHOLD >> 20} MiB"
