"""``downlink serve``: run the HTTP server."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import click
import uvicorn

from downlink.cli.options import database_option, load_settings
from downlink.metrics import MULTIPROC_ENV
from downlink.settings import Settings
from downlink.store import migrate as migrations
from downlink.store.engine import make_engine


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes; each has its own group-commit writer.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@database_option
def serve(host: str, port: int, workers: int, log_level: str, database_url: str | None) -> None:
    """Start the server (SQLite file ./downlink.db unless DATABASE_URL says otherwise)."""
    settings = load_settings(database_url)
    if workers > 1 and settings.analytics_url.startswith("chdb:"):
        raise click.ClickException(
            "DOWNLINK_ANALYTICS_URL=chdb://… opens its folder in one process only: "
            "serve it with --workers 1, or use a ClickHouse server (clickhouse://…)"
        )
    # Migrate once here, so that several workers do not race to create the schema.
    engine = make_engine(settings)
    try:
        migrations.upgrade(engine, sources=settings.registry)
    except Exception as exc:  # noqa: BLE001 - shown as a CLI error, not a traceback
        raise click.ClickException(f"cannot prepare the database: {exc}") from None
    finally:
        engine.dispose()
    os.environ["DATABASE_URL"] = settings.database_url
    os.environ["DOWNLINK_SKIP_MIGRATIONS"] = "1"
    click.echo(
        f"Downlink on http://{host}:{port}/ storing into {settings.public()['database_url']}"
    )
    metrics_dir = None
    if workers > 1:
        # One /metrics for all workers: prometheus_client's multiprocess mode, in a
        # directory of this run (see downlink.metrics).
        metrics_dir = tempfile.mkdtemp(prefix="downlink-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir
    try:
        _run(host, port, workers, log_level, settings)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def server_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn options the sources ask for (websocket pings, frame size)."""
    options: dict[str, Any] = {}
    for source in settings.registry:
        if source.server_options is not None:
            options.update(source.server_options(settings))
    return options


def _run(host: str, port: int, workers: int, log_level: str, settings: Settings) -> None:
    uvicorn.run(
        "downlink.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=5,
        **server_options(settings),
        http="downlink.security.protocol:GuardedHttpToolsProtocol",
        ws="downlink.security.protocol:GuardedWebSocketsProtocol",
    )
