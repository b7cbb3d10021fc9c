"""Day ranges and rollup filters shared by the dashboard queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, Table

from downlink.store.queries.patterns import matches

EPOCH = date(1970, 1, 1)

# Any SELECT, whatever its column types (Select is variadic in SQLAlchemy 2.1).
S = TypeVar("S", bound="Select[Any]")


def day_number(d: date) -> int:
    """Return the day number (days since 1970-01-01) of a date."""
    return (d - EPOCH).days


def day_date(n: int) -> date:
    """Return the date of a day number."""
    return EPOCH + timedelta(days=n)


def today() -> int:
    """Return today's UTC day number."""
    return day_number(datetime.now(UTC).date())


@dataclass(frozen=True)
class Period:
    """Whole UTC days of reception, both ends included."""

    first: int
    last: int

    @classmethod
    def past(cls, days: int, until: int | None = None) -> Period:
        """Return the ``days`` days ending today (or ``until``)."""
        end = today() if until is None else until
        return cls(end - days + 1, end)

    @property
    def days(self) -> int:
        """Number of days covered."""
        return self.last - self.first + 1

    def as_json(self) -> dict[str, str]:
        """Return the range as ISO dates."""
        return {"from": day_date(self.first).isoformat(), "to": day_date(self.last).isoformat()}

    def where(self, stmt: S, table: Table) -> S:
        """Restrict ``stmt`` to rollup rows of this period."""
        return stmt.where(table.c.day >= self.first, table.c.day <= self.last)


@dataclass(frozen=True)
class RollupFilter:
    """Equality conditions on rollup dimensions; None matches everything."""

    source: str | None = None
    classification: str | None = None
    build: str | None = None
    host_type: str | None = None
    severity: int | None = None

    def columns(self) -> set[str]:
        """Return the dimensions this filter constrains."""
        names = ("source", "classification", "build", "host_type", "severity")
        return {n for n in names if getattr(self, n) is not None}

    def where(self, stmt: S, table: Table) -> S:
        """Apply the conditions whose column exists in ``table``."""
        for name in ("source", "classification", "build", "host_type", "severity"):
            value = getattr(self, name)
            if value is None or name not in table.c:
                continue
            column = table.c[name]
            stmt = stmt.where(matches(column, value) if isinstance(value, str) else column == value)
        return stmt


def build_sort_key(build: str) -> tuple[int, int, str]:
    """Order integer builds numerically first, then every other build by name."""
    if build.isascii() and build.isdigit():
        return (0, int(build), "")
    return (1, 0, build)
