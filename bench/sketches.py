"""Merging crash-group machine sketches: the stored encoding against zlib, same run.

    python bench/sketches.py

The crash list over 60 days merges one HyperLogLog sketch per (day, group) of its 50
groups, about 2,000 sketches, on every request (``downlink.store.sketch.union``).
Sketches of realistic sizes (most cells hold a few machines, the top groups' cells
hundreds or thousands) are encoded both ways and merged; the CPU time per union is
the median of seven, and the ratio is zlib's time over the stored encoding's. The
section ``sketches`` of docs/performance.md is replaced with the results.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, table, write_section  # noqa: E402

from downlink.store import sketch  # noqa: E402

SKETCHES = 2000
RUNS = 7


def _cells(seed: int) -> list[bytearray]:
    """Register arrays of day cells: sizes skewed as crash groups are (a few big ones)."""
    rng = random.Random(seed)
    cells = []
    for i in range(SKETCHES):
        machines = int(rng.paretovariate(0.9) * 3) if i % 40 else rng.randint(1500, 4000)
        regs = bytearray(sketch.M)
        ids = (f"{rng.getrandbits(128):032x}" for _ in range(machines))
        sketch.apply(regs, sketch.updates_of(ids))
        cells.append(regs)
    return cells


def _cpu_ms(blobs: list[bytes]) -> float:
    times = []
    for _ in range(RUNS):
        t = time.process_time()
        sketch.union(blobs)
        times.append((time.process_time() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    """Run the benchmark and write its section."""
    cells = _cells(1)
    stored = [sketch.encode(r) for r in cells]
    zlibbed = [zlib.compress(bytes(r), 1) for r in cells]
    assert (sketch.union(stored) == sketch.union(zlibbed)).all()
    new_ms, old_ms = _cpu_ms(stored), _cpu_ms(zlibbed)
    rows = [
        ("zlib (before migration 0017)", sum(map(len, zlibbed)) / 1e3, old_ms, 1.0),
        ("sparse pairs / raw registers", sum(map(len, stored)) / 1e3, new_ms, old_ms / new_ms),
    ]
    headers = ["encoding", "stored kB", "union CPU ms", "speed-up"]
    print(table(headers, rows))
    write_section(
        "sketches",
        "## Merging crash-group machine sketches\n\n"
        f"`python bench/sketches.py` — the union of {SKETCHES:,} day sketches (the crash "
        "list over 60 days), CPU time, median of seven; " + machine() + "\n\n"
        + table(headers, rows),
    )


if __name__ == "__main__":
    main()
