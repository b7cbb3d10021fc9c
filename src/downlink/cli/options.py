"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from downlink.settings import Settings, SettingsError, from_env

F = TypeVar("F", bound=Callable[..., Any])


def database_option(fn: F) -> F:
    """Add ``--database-url`` (default: $DATABASE_URL, else ./downlink.db)."""
    return click.option(
        "--database-url",
        envvar="DATABASE_URL",
        default=None,
        help="SQLAlchemy URL: sqlite:///path.db (default sqlite:///downlink.db) or postgresql://…",
    )(fn)


def load_settings(database_url: str | None) -> Settings:
    """Read settings from the environment, turning bad values into a CLI error."""
    try:
        return from_env(database_url=database_url)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
