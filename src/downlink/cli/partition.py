"""``downlink partition``: monthly partitions of ``records`` on PostgreSQL (opt-in).

``records`` converts a live table without stopping ingestion; ``status`` lists the
partitions; ``ensure`` creates the coming months' partitions now (every server also
does it each hour). See ``store/partitions.py`` and docs/deployment.md.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import click
from sqlalchemy import Engine

from downlink.cli.options import database_option, load_settings
from downlink.settings import Settings
from downlink.store import migrate, partitions
from downlink.store.engine import make_engine

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def _when(ts: float | None, empty: str) -> str:
    return empty if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _month(value: str | None) -> float | None:
    if value is None:
        return None
    found = _MONTH.match(value)
    if found is None or not 1 <= int(found[2]) <= 12:
        raise click.BadParameter(f"{value!r} is not a month (YYYY-MM)", param_hint="--boundary")
    return datetime(int(found[1]), int(found[2]), 1, tzinfo=UTC).timestamp()


def _engine(database_url: str | None) -> tuple[Settings, Engine]:
    settings = load_settings(database_url)
    if not settings.database_url.startswith("postgres"):
        raise click.UsageError("partitioning needs PostgreSQL (DATABASE_URL is SQLite)")
    return settings, make_engine(settings, writer=True)


@click.group("partition")
def partition_cmd() -> None:
    """Monthly partitions of records on PostgreSQL."""


@partition_cmd.command("records")
@click.option("--boundary", default=None, metavar="YYYY-MM",
              help="First month of the new partitions (default: next month; it must be "
                   "after every record the old table can still take).")
@click.option("--ahead", type=click.IntRange(0, 24), default=partitions.AHEAD,
              show_default=True, help="Months of partitions to create after the boundary.")
@database_option
def convert_cmd(boundary: str | None, ahead: int, database_url: str | None) -> None:
    """Partition records by month while the servers keep running."""
    settings, engine = _engine(database_url)
    try:
        if migrate.pending(engine, settings.registry):
            raise click.ClickException("the database is not migrated: run `downlink migrate`")
        start = _month(boundary)
        if start is not None and start <= datetime.now(UTC).timestamp():
            raise click.BadParameter("the boundary must be a future month", param_hint="--boundary")
        try:
            made = partitions.convert(engine, boundary=start, ahead=ahead, say=click.echo)
        except partitions.PartitionError as exc:
            raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    for p in made:
        click.echo(f"{p.name}\t{_when(p.lower, 'MINVALUE')}\t{_when(p.upper, 'MAXVALUE')}")
    click.echo("records is partitioned by month")


@partition_cmd.command("status")
@database_option
def status_cmd(database_url: str | None) -> None:
    """List the partitions of records (estimated rows)."""
    _settings, engine = _engine(database_url)
    try:
        with engine.connect() as conn:
            if not partitions.is_partitioned(conn):
                click.echo("records is not partitioned")
                return
            for p in partitions.partitions(conn):
                lower, upper = _when(p.lower, "MINVALUE"), _when(p.upper, "MAXVALUE")
                click.echo(f"{p.name}\t{lower}\t{upper}\t~{p.rows} rows")
    finally:
        engine.dispose()


@partition_cmd.command("ensure")
@database_option
def ensure_cmd(database_url: str | None) -> None:
    """Create the partitions of this month and the next ones now."""
    _settings, engine = _engine(database_url)
    try:
        with engine.begin() as conn:
            if not partitions.is_partitioned(conn):
                raise click.ClickException(
                    "records is not partitioned (downlink partition records)"
                )
            made = partitions.ensure_ahead(conn)
    finally:
        engine.dispose()
    click.echo("created " + ", ".join(made) if made else "every partition is there")
