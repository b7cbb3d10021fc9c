"""Query-parameter parsing shared by the JSON API and the pages."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from downlink.api.errors import BadRequest


def parse_moment(value: str | None, name: str) -> float | None:
    """Parse epoch seconds or an ISO 8601 time (UTC when it has no offset).

    An absent or blank value is None; anything else unparseable, or a non-finite
    number, raises BadRequest naming the parameter.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest(f"{name} must be epoch seconds or an ISO 8601 time") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    if not math.isfinite(number):
        raise BadRequest(f"{name} must be a finite number")
    return number
