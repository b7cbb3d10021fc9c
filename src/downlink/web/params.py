"""Query-string parsing shared by the pages: date ranges and filters, or a 400."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from downlink import params as api_params
from downlink.errors import BadRequest
from downlink.store.queries.period import Period, RollupFilter, day_date, day_number, today

MAX_DAYS = 3700
_TEXT_MAX = 256


def text(params: Mapping[str, str], name: str, max_len: int = _TEXT_MAX) -> str | None:
    """Return a trimmed text parameter, None when empty, 400 when too long or not text."""
    value = params.get(name, "").strip()
    return api_params.text(value, name, max_len, f"{name} is invalid") if value else None


def integer(params: Mapping[str, str], name: str, lo: int, hi: int) -> int | None:
    """Return an integer parameter within [lo, hi], None when empty (bounded parsing)."""
    value = params.get(name, "").strip()
    return api_params.integer(value, name, lo, hi) if value else None


def plain_params(params: Mapping[str, str], max_len: int = 1000) -> dict[str, str]:
    """Return every parameter as given, or a 400 naming the first that is not plain text."""
    return {
        name: api_params.text(value, name, max_len, f"{name} is invalid") or ""
        for name, value in params.items()
    }


def _date(params: Mapping[str, str], name: str) -> int | None:
    value = params.get(name, "").strip()
    if not value:
        return None
    try:
        return day_number(date.fromisoformat(value))
    except ValueError:
        raise BadRequest(f"{name} must be a date like 2024-01-31") from None


# Time-range presets (``range=``), kept across pages by the navigation bar.
PRESETS = {"24h": "24 h", "7d": "7 d", "30d": "30 d", "90d": "90 d", "ytd": "year to date"}


def preset_period(name: str) -> Period:
    """The days of a preset: ``24h`` is yesterday and today (whole UTC days)."""
    end = today()
    if name == "24h":
        return Period(end - 1, end)
    if name == "ytd":
        return Period(day_number(day_date(end).replace(month=1, day=1)), end)
    if name in PRESETS:
        return Period.past(int(name[:-1]), end)
    raise BadRequest(f"range must be one of {', '.join(PRESETS)}")


def period(params: Mapping[str, str], default_days: int) -> Period:
    """Return the day range from ``from``/``to`` (ISO dates), or the preset ``range``,
    by default the past N days."""
    last = _date(params, "to")
    first = _date(params, "from")
    preset = params.get("range", "").strip()
    if first is None and last is None and preset:
        return preset_period(preset)
    if last is None:
        last = today() if first is None else max(first, today())
    if first is None:
        first = last - default_days + 1
    if first > last:
        raise BadRequest("from must not be after to")
    if last - first + 1 > MAX_DAYS:
        raise BadRequest(f"the date range must not exceed {MAX_DAYS} days")
    return Period(first, last)


def rollup_filter(params: Mapping[str, str]) -> RollupFilter:
    """Return the dimension filters common to the rollup dashboards."""
    return RollupFilter(
        source=text(params, "source", 32),
        classification=text(params, "classification", 140),
        build=text(params, "build"),
        host_type=text(params, "platform"),
        severity=integer(params, "severity", 1, 4),
    )


def moment(params: Mapping[str, str], name: str) -> float | None:
    """Return an ISO date/time (UTC unless zoned) or epoch seconds as epoch seconds."""
    return api_params.parse_moment(params.get(name), name)
