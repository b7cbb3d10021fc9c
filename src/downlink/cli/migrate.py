"""``downlink migrate``: apply database migrations."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy import Engine, create_engine

from downlink.cli.options import database_option, load_settings
from downlink.settings import Settings
from downlink.store import migrate as migrations
from downlink.store.engine import make_engine


def _missing_sqlite_file(engine: Engine) -> Path | None:
    """The SQLite file ``engine`` would create on connecting, if it does not exist yet."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    path = Path(str(url.database))
    return None if path.exists() else path


@click.command()
@click.option("--check", is_flag=True, help="Only list pending migrations; exit 1 if any.")
@database_option
def migrate(check: bool, database_url: str | None) -> None:
    """Bring the database schema up to date."""
    settings = load_settings(database_url)
    engine = make_engine(settings)
    try:
        if check:
            _check(engine, settings)
            return
        try:
            todo = migrations.pending(engine, settings.registry)
            migrations.upgrade(engine, sources=settings.registry)
        except Exception as exc:  # noqa: BLE001 - a CLI error naming the problem
            raise click.ClickException(f"migration failed: {exc}") from None
        click.echo(f"applied {len(todo)} migration(s); schema is up to date")
    finally:
        engine.dispose()


def _check(engine: Engine, settings: Settings) -> None:
    """List the pending migrations (exit 1 if any) without creating or changing anything."""
    missing = _missing_sqlite_file(engine)
    try:
        if missing is not None:
            # Every migration is pending: list them as for an empty database, in memory.
            empty = create_engine("sqlite://")
            try:
                todo = migrations.pending(empty, settings.registry)
            finally:
                empty.dispose()
            click.echo(f"{missing} does not exist yet: every migration is pending")
        else:
            todo = migrations.pending(engine, settings.registry)
    except Exception as exc:  # noqa: BLE001 - a CLI error naming the problem
        raise click.ClickException(f"cannot check the migrations: {exc}") from None
    for rev in todo:
        click.echo(f"pending: {rev}")
    if todo:
        raise SystemExit(1)
    click.echo("up to date")
