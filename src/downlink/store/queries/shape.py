"""Query shapes that keep the planners on the right index whatever their statistics say.

``records`` holds every source side by side: millions of Clear Linux records next to a
few (or no) substrate ones, and the planners' statistics are often stale or missing
(bulk loads, SQLite never analyses by itself). The rule the queries follow is written
down in docs/architecture.md ("Queries on a table of skewed sources").
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import CTE, Select


def rows_first(stmt: Select[Any], name: str) -> CTE:
    """Return ``stmt`` as a ``MATERIALIZED`` CTE: its rows are found before anything else.

    Grouping or sorting the rows of a filtered SELECT in the same statement lets a
    planner walk a whole table along an index in the GROUP BY / ORDER BY order, to save
    a sort, when its statistics make the filter look unselective. Selected in a
    materialized CTE, the rows can only be found through the filter's own index; the
    grouping then runs over them alone. SQLite 3.35+ and PostgreSQL 12+ both honour
    ``MATERIALIZED``.
    """
    return stmt.cte(name).prefix_with("MATERIALIZED")
