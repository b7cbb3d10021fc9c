"""``downlink archive``: bring the raw archive up to date by hand (a backfill).

The server keeps the archive itself (:mod:`downlink.archive.consumer` and
:mod:`downlink.archive.closer`); this command runs the same code in this process:
the archive consumers catch up with every committed row, then every day that is over
(plus ``DOWNLINK_ARCHIVE_GRACE_S``) is closed. Safe beside a running server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import click
from sqlalchemy import Engine

from downlink.archive import days
from downlink.archive.closer import close_due
from downlink.archive.consumer import SOURCE, Archiving, archiving
from downlink.archive.storage import Storage, StorageError
from downlink.cli.options import database_option, load_settings
from downlink.pipeline.consumers import bind, ensure_all, step
from downlink.settings import Settings
from downlink.store import migrate as migrations
from downlink.store.engine import make_engine

T = TypeVar("T")


def open_archive(settings: Settings) -> Storage:
    """The storage ``DOWNLINK_ARCHIVE`` names (a usage error when it is off or wrong)."""
    return archiving_of(settings).storage


def archiving_of(settings: Settings) -> Archiving:
    """The archive of these settings (a usage error when it is off or wrong)."""
    if not settings.archive:
        raise click.UsageError("the raw archive is off: set DOWNLINK_ARCHIVE")
    try:
        found = archiving(settings)
    except StorageError as exc:
        raise click.UsageError(f"DOWNLINK_ARCHIVE: {exc}") from None
    if found is None:
        raise click.ClickException("no source archives anything (Source.archives)")
    return found


def archives_of(settings: Settings, source: str | None) -> list[days.Bound]:
    """The archives of every source, or of one (a usage error naming what exists)."""
    bounds = archiving_of(settings).bounds
    if source is None:
        return bounds
    chosen = days.for_source(bounds, source)
    if not chosen:
        having = sorted({b.source for b in bounds})
        raise click.BadParameter(
            f"source {source!r} archives nothing (sources with archives: "
            f"{', '.join(having) or 'none'})", param_hint="--source",
        )
    return chosen


def _runner(engine: Engine, *, write: bool) -> Callable[..., Any]:
    def run(fn: Callable[..., T], *args: Any) -> T:
        opened = engine.begin() if write else engine.connect()
        with opened as conn:
            return fn(conn, *args)

    return run


@click.command("archive")
@click.option("--source", default=None, help="Only this source's archives (default: all).")
@database_option
def archive_cmd(source: str | None, database_url: str | None) -> None:
    """Archive every committed row and close every day that is over (idempotent)."""
    settings = load_settings(database_url)
    found = archiving_of(settings)
    chosen = archives_of(settings, source)
    tables = {b.table.name for b in chosen}
    engine = make_engine(settings, writer=True)
    try:
        if migrations.pending(engine, settings.registry):
            raise click.ClickException("the database is not up to date: run `downlink migrate`")
        bounds = [b for b in bind(settings.registry, [(SOURCE, c) for c in found.consumers()])
                  if b.source == SOURCE and b.consumer.follows in tables]
        with engine.begin() as conn:
            ensure_all(conn, bounds)
        for follower in bounds:
            staged = 0
            while True:
                with engine.begin() as conn:
                    n = step(conn, follower)
                if not n:
                    break
                staged += n
            click.echo(f"{follower.name}: {staged} new row(s) of {follower.consumer.follows}")
        only = dataclasses.replace(found, bounds=chosen)
        closed = close_due(_runner(engine, write=False), _runner(engine, write=True), only)
        for bound in chosen:
            mine = [rows for item, rows in closed if item.archive == bound.key]
            click.echo(f"{bound.key}: archived {sum(mine)} row(s) in {len(mine)} day(s)")
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
