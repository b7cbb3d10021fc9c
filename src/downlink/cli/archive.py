"""``downlink archive``: keep the sources' rows of every finished day in the raw archive."""

from __future__ import annotations

import click

from downlink.archive import days
from downlink.archive.storage import Storage, StorageError, open_storage
from downlink.cli.options import database_option, load_settings
from downlink.settings import Settings
from downlink.store import migrate as migrations
from downlink.store.engine import make_engine


def open_archive(settings: Settings) -> Storage:
    """The storage ``DOWNLINK_ARCHIVE`` names (a usage error when it is off or wrong)."""
    if not settings.archive:
        raise click.UsageError("the raw archive is off: set DOWNLINK_ARCHIVE")
    try:
        return open_storage(settings.archive, settings.archive_s3_endpoint or None)
    except StorageError as exc:
        raise click.UsageError(f"DOWNLINK_ARCHIVE: {exc}") from None


def archives_of(settings: Settings, source: str | None) -> list[days.Bound]:
    """The archives of every source, or of one (a usage error naming what exists)."""
    try:
        bounds = days.bind(settings.registry)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
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


@click.command("archive")
@click.option("--source", default=None, help="Only this source (default: every source).")
@database_option
def archive_cmd(source: str | None, database_url: str | None) -> None:
    """Archive every finished day of the sources' rows (idempotent; run it daily)."""
    settings = load_settings(database_url)
    storage = open_archive(settings)
    chosen = archives_of(settings, source)
    engine = make_engine(settings)
    try:
        if migrations.pending(engine, settings.registry):
            raise click.ClickException("the database is not up to date: run `downlink migrate`")
        for bound in chosen:
            n_days, rows = days.archive_closed_days(engine, storage, bound)
            click.echo(f"{bound.source}/{bound.archive.name}: archived {rows} row(s) "
                       f"in {n_days} day(s)")
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
