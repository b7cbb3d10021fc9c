"""Small inline SVG figures for table cells: sparklines and stacked share bars.

Drawn on the server as geometry (points, rectangles) that templates put in ``<svg>``
elements: no script, nothing for the Content-Security-Policy to refuse (SVG
presentation attributes are not styles), and no cost beyond the numbers the view
already has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SPARK_WIDTH = 120
SPARK_HEIGHT = 22
SPARK_POINTS_MAX = 92  # longer series are summed into buckets of whole days
BAR_WIDTH = 160
BAR_SEGMENTS = 8  # the rest of the builds share one "other" segment


def buckets(values: Sequence[int], most: int = SPARK_POINTS_MAX) -> list[int]:
    """Sum consecutive values into at most ``most`` buckets of equal length (the last
    may be shorter)."""
    size = max(1, -(-len(values) // most))
    return [sum(values[i : i + size]) for i in range(0, len(values), size)]


def spark_points(
    values: Sequence[int], width: int = SPARK_WIDTH, height: int = SPARK_HEIGHT
) -> str:
    """The ``points`` of a sparkline polyline: the values scaled into the box, the
    highest at the top, zero on the bottom edge (one pixel of margin)."""
    series = buckets(values)
    if not series:
        return ""
    top = max(series) or 1
    step = (width - 2) / max(1, len(series) - 1)
    return " ".join(
        f"{1 + i * step:.1f},{height - 1 - (height - 2) * v / top:.1f}"
        for i, v in enumerate(series)
    )


@dataclass(frozen=True)
class Segment:
    """One stretch of a share bar: what it counts, how many, where it starts, how wide."""

    label: str
    count: int
    x: float
    width: float
    other: bool  # the segment of the smallest shares, summed


def share_bar(
    counts: Mapping[str, int], width: int = BAR_WIDTH, most: int = BAR_SEGMENTS
) -> list[Segment]:
    """Segments of a bar ``width`` wide, one per key in the order given, widths in
    proportion to the counts; beyond the ``most - 1`` largest, the rest are one "other"."""
    total = sum(counts.values())
    if total <= 0:
        return []
    keys = list(counts)
    if len(keys) > most:
        kept = set(sorted(keys, key=lambda k: -counts[k])[: most - 1])
        parts = [(k, counts[k], False) for k in keys if k in kept]
        parts.append(("other", sum(counts[k] for k in keys if k not in kept), True))
    else:
        parts = [(k, counts[k], False) for k in keys]
    out: list[Segment] = []
    x = 0.0
    for label, n, other in parts:
        w = width * n / total
        out.append(Segment(label, n, round(x, 2), round(w, 2), other))
        x += w
    return out
