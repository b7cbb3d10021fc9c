"""``downlink purge``: delete expired substrate records now, or count them (--dry-run)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import click

from downlink.cli.options import database_option, load_settings
from downlink.store import retention
from downlink.store.engine import make_engine


def _finite(_ctx: click.Context, _param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter("must be a finite number of hours")
    return value


@click.command()
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@click.option(
    "--older-than-hours",
    type=click.FloatRange(min=0.0, max=1e6),
    default=None,
    callback=_finite,
    help="Retention to apply (default: $DOWNLINK_SUBSTRATE_RETENTION_HOURS).",
)
@database_option
def purge(dry_run: bool, older_than_hours: float | None, database_url: str | None) -> None:
    """Delete substrate records received more than the retention ago (never /audit ones).

    Then every source with a retention setting purges its own expired rows.
    """
    settings = load_settings(database_url)
    hours = settings.substrate_retention_hours if older_than_hours is None else older_than_hours
    cutoff = retention.cutoff_for(hours)
    engine = make_engine(settings, writer=True)
    read_engine = make_engine(settings)

    def run_write(fn, *args):  # type: ignore[no-untyped-def]
        with engine.begin() as conn:
            return fn(conn, *args)

    def run_read(fn, *args):  # type: ignore[no-untyped-def]
        with read_engine.connect() as conn:
            return fn(conn, *args)

    def run_rolled_back(fn: Callable[..., int], *args: Any) -> int:
        with engine.connect() as conn, conn.begin() as tx:
            try:
                return fn(conn, *args)
            finally:
                tx.rollback()

    by_source: dict[str, int] = {}
    try:
        result = retention.purge(
            run_write, cutoff, settings.purge_batch, dry_run=dry_run, count=run_read
        )
        for source, source_cutoff in retention.source_cutoffs(settings):
            if dry_run:
                n = run_rolled_back(retention.count_source, source, source_cutoff)
            else:
                n = retention.purge_source(run_write, source, source_cutoff)
            by_source[source.name] = n
    except Exception as exc:  # noqa: BLE001 - a CLI error naming the problem
        raise click.ClickException(f"purge failed: {exc}") from None
    finally:
        engine.dispose()
        read_engine.dispose()
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"{verb} {result.records} substrate record(s) and {result.connections} "
        f"connection row(s) older than {hours:g} h"
    )
    for name, n in by_source.items():
        click.echo(f"{verb} {n} {name} row(s) past the {name} retention")
