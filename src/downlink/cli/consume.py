"""``downlink consume``: the consumers and jobs in a process of their own.

Beside ``downlink serve`` with ``DOWNLINK_RUN_CONSUMERS=off`` (docs/deployment.md):
the ingest workers then only take records, and this process keeps the derived data
(crash groups, rollups, the archive, the analytics shippers) and runs the jobs.
"""

from __future__ import annotations

import os

import click
import uvicorn

from downlink.cli.options import database_option, load_settings
from downlink.metrics import MULTIPROC_ENV
from downlink.store import migrate as migrations
from downlink.store.engine import make_engine


@click.command("consume")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address of its /-/health and /metrics.")
@click.option("--port", default=8001, show_default=True, type=click.IntRange(0, 65535),
              help="Port of its /-/health and /metrics.")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@database_option
def consume_cmd(host: str, port: int, log_level: str, database_url: str | None) -> None:
    """Run the consumers, the job runner and the archive closer (no ingest).

    Run it beside `downlink serve` with DOWNLINK_RUN_CONSUMERS=off; several may run at
    once (each record is still handled once). SIGTERM stops it after the work in flight.
    """
    settings = load_settings(database_url)
    if settings.analytics_url.startswith("chdb:"):
        raise click.ClickException(
            "DOWNLINK_ANALYTICS_URL=chdb://… opens its folder in one process only, and "
            "`downlink serve` reads it: use a ClickHouse server (clickhouse://…), or keep "
            "the consumers in the server (DOWNLINK_RUN_CONSUMERS=in-process)"
        )
    engine = make_engine(settings)
    try:
        migrations.upgrade(engine, sources=settings.registry)
    except Exception as exc:  # noqa: BLE001 - shown as a CLI error, not a traceback
        raise click.ClickException(f"cannot prepare the database: {exc}") from None
    finally:
        engine.dispose()
    os.environ["DATABASE_URL"] = settings.database_url
    os.environ["DOWNLINK_SKIP_MIGRATIONS"] = "1"
    # Its own metrics only (a `serve` of several workers shares a directory of theirs).
    os.environ.pop(MULTIPROC_ENV, None)
    click.echo(
        f"Downlink consumers on {settings.public()['database_url']}; "
        f"health and metrics on http://{host}:{port}/"
    )
    uvicorn.run(
        "downlink.consume:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=1,
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=5,
    )
