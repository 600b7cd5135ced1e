#!/usr/bin/env python3
"""The floor under a durable commit on this disk: latency of a 4 KiB write + fdatasync.

Overwrites the same 4 KiB block of a scratch file in DIR (default: a temp dir on the file system
that holds /tmp) and fdatasyncs after each write, for SECONDS (default 10), then prints the
count and p50/p90/p99/max in milliseconds. A commit of SQLite in WAL mode with synchronous=FULL
is at least one such write+sync, so the p99 here bounds the p99 ack latency from below.

Usage: bench/fsync-latency.py [SECONDS] [DIR]
"""
import os
import sys
import tempfile
import time

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
directory = sys.argv[2] if len(sys.argv) > 2 else None
with tempfile.TemporaryDirectory(dir=directory) as tmp:
    path = os.path.join(tmp, "probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    block = b"\0" * 4096
    os.write(fd, block)
    os.fsync(fd)
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        os.pwrite(fd, block, 0)
        os.fdatasync(fd)
        samples.append((time.perf_counter() - start) * 1000.0)
    os.close(fd)
samples.sort()


def pct(p):
    return samples[min(len(samples) - 1, max(0, int(round(p / 100.0 * len(samples))) - 1))]


print(
    f"fsync-latency: {len(samples)} write+fdatasync of 4 KiB in {seconds:.0f} s: "
    f"p50 {pct(50):.2f} ms, p90 {pct(90):.2f} ms, p99 {pct(99):.2f} ms, max {samples[-1]:.2f} ms"
)
