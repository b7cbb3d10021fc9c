"""The daily rollup cubes: the smallest one that has every column a dashboard needs."""

from __future__ import annotations

from sqlalchemy import Table

from downlink.sources.clearlinux.tables import (
    rollup_build_daily,
    rollup_class_daily,
    rollup_daily,
    rollup_platform_daily,
)

# Smallest first: every table holds the same counts, summed over fewer dimensions.
CUBES: tuple[Table, ...] = (
    rollup_class_daily,
    rollup_build_daily,
    rollup_platform_daily,
    rollup_daily,
)


def cube_for(columns: set[str]) -> Table:
    """Return the smallest daily rollup that has every one of ``columns``."""
    for table in CUBES:
        if columns <= set(table.c.keys()):
            return table
    raise ValueError(f"no rollup has the columns {sorted(columns)}")
