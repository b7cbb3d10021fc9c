"""``downlink purge``: delete every source's expired rows now, or count them (--dry-run)."""

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
    "--source",
    "only",
    multiple=True,
    help="Purge only this source (repeatable; default: every source with a retention).",
)
@click.option(
    "--older-than-hours",
    type=click.FloatRange(min=0.0, max=1e6),
    default=None,
    callback=_finite,
    help="Retention to apply instead of the sources' settings (needs --source).",
)
@database_option
def purge(
    dry_run: bool, only: tuple[str, ...], older_than_hours: float | None, database_url: str | None
) -> None:
    """Delete the rows each source keeps for a limited time, once past its retention.

    Each source with a retention setting purges its own expired rows (substrate: its
    records received on / and stale connection rows, never /audit ones), in short
    transactions. A retention of 0 keeps everything.
    """
    settings = load_settings(database_url)
    registry = settings.registry
    keeping = [s.name for s in registry if retention.retention_hours(settings, s) is not None]
    unknown = [name for name in only if name not in keeping]
    if unknown:
        raise click.BadParameter(
            f"no source {unknown[0]!r} with a retention (sources: {', '.join(keeping)})",
            param_hint="--source",
        )
    if older_than_hours is not None and not only:
        raise click.BadParameter(
            "replaces a source's retention: name the source(s) with --source",
            param_hint="--older-than-hours",
        )
    chosen = [
        (source, cutoff)
        for source, cutoff in retention.source_cutoffs(settings, hours=older_than_hours)
        if not only or source.name in only
    ]
    engine = make_engine(settings, writer=True)

    def run_write(fn, *args):  # type: ignore[no-untyped-def]
        with engine.begin() as conn:
            return fn(conn, *args)

    def run_rolled_back(fn: Callable[..., int], *args: Any) -> int:
        with engine.connect() as conn, conn.begin() as tx:
            try:
                return fn(conn, *args)
            finally:
                tx.rollback()

    by_source: dict[str, int] = {}
    try:
        for source, cutoff in chosen:
            if dry_run:
                n = run_rolled_back(retention.count_source, settings, source, cutoff)
            else:
                n = retention.purge_source(run_write, settings, source, cutoff)
            by_source[source.name] = n
    except Exception as exc:  # noqa: BLE001 - a CLI error naming the problem
        raise click.ClickException(f"purge failed: {exc}") from None
    finally:
        engine.dispose()
    verb = "would delete" if dry_run else "deleted"
    for source, _cutoff in chosen:
        hours = older_than_hours
        if hours is None:
            hours = retention.retention_hours(settings, source)
        click.echo(f"{verb} {by_source[source.name]} {source.name} row(s) older than {hours:g} h")
