"""The collector's four draft-04 JSON Schemas, shipped as package data.

Each file holds a ``request`` and a ``response`` schema (fuel-stats'
``collector/api/schemas``, unchanged). Requests are checked by the schema compiled to
Python with ``fastjsonschema`` (a thousand action logs in milliseconds, against about a
second for the interpreting validator); a refused body is checked again with
:class:`jsonschema.Draft4Validator`, whose best-matching error names the problem.
Unlike the original (which never checked formats)
the OSWL ``date`` and ``time`` formats are enforced, leniently for times: Fuel sends
``datetime.time().isoformat()``, e.g. ``12:34:56.789012`` without a time zone.
"""

from __future__ import annotations

import datetime as dt
import json
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema
from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import best_match

MESSAGE_MAX = 300
NAMES = ("ping", "installation_structure", "action_logs", "oswl")

_formats = FormatChecker(())


def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    dt.date.fromisoformat(value)
    return len(value) == 10


def _is_time(value: object) -> bool:
    if isinstance(value, str):
        dt.time.fromisoformat(value)
    return True


_formats.checks("date", raises=ValueError)(_is_date)
_formats.checks("time", raises=ValueError)(_is_time)


def _passes(check: Any) -> Any:
    def run(value: object) -> bool:
        try:
            return bool(check(value))
        except ValueError:
            return False

    return run


_FAST_FORMATS = {"date": _passes(_is_date), "time": _passes(_is_time)}


@cache
def schema(name: str) -> dict[str, Any]:
    """Return the whole schema document ``name`` (one of :data:`NAMES`)."""
    text = resources.files(__package__).joinpath("schemas", f"{name}.json").read_text("utf-8")
    found: dict[str, Any] = json.loads(text)
    return found


@cache
def request_validator(name: str) -> Draft4Validator:
    """The validator of ``name``'s request bodies (with the date/time format checks)."""
    return Draft4Validator(schema(name)["request"], format_checker=_formats)


@cache
def fast_validator(name: str) -> Any:
    """``name``'s request schema compiled to Python (raises JsonSchemaValueException)."""
    return fastjsonschema.compile(schema(name)["request"], formats=_FAST_FORMATS)


@cache
def response_validator(name: str) -> Draft4Validator:
    """The validator of ``name``'s responses (used by the tests)."""
    return Draft4Validator(schema(name)["response"])


def request_error(name: str, body: Any) -> str | None:
    """Return a message naming the first problem of ``body``, or None if it is valid."""
    try:
        fast_validator(name)(body)
        return None
    except fastjsonschema.JsonSchemaValueException as fast:
        error = best_match(request_validator(name).iter_errors(body))
        if error is None:
            return str(fast.message)[:MESSAGE_MAX]
    where = "/".join(str(p) for p in error.absolute_path)
    message = error.message
    if error.validator == "oneOf":
        # The default message repeats both branches of the schema.
        shape = "more than one" if not error.context else "none"
        message = f"matches {shape} of the allowed shapes (see action_type)"
    message = message[:MESSAGE_MAX]
    return f"{where}: {message}" if where else message
