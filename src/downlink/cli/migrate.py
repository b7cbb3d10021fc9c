"""``downlink migrate``: apply database migrations."""

from __future__ import annotations

import click

from downlink.cli.options import database_option, load_settings
from downlink.store import migrate as migrations
from downlink.store.engine import make_engine


@click.command()
@click.option("--check", is_flag=True, help="Only list pending migrations; exit 1 if any.")
@database_option
def migrate(check: bool, database_url: str | None) -> None:
    """Bring the database schema up to date."""
    settings = load_settings(database_url)
    engine = make_engine(settings)
    try:
        todo = migrations.pending(engine, settings.registry)
        if check:
            for rev in todo:
                click.echo(f"pending: {rev}")
            if todo:
                raise SystemExit(1)
            click.echo("up to date")
            return
        migrations.upgrade(engine, sources=settings.registry)
        click.echo(f"applied {len(todo)} migration(s); schema is up to date")
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - a CLI error naming the problem
        raise click.ClickException(f"migration failed: {exc}") from None
    finally:
        engine.dispose()
