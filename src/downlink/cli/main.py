"""The ``downlink`` command: a click group with one module per command."""

from __future__ import annotations

import click

from downlink import __version__
from downlink.cli import migrate, send, serve, transfer
from downlink.cli.purge import purge
from downlink.cli.reprocess import reprocess_cmd
from downlink.cli.settings import settings_cmd
from downlink.cli.spool import spool_cmd


@click.group()
@click.version_option(__version__, prog_name="downlink")
def cli() -> None:
    """Downlink telemetry server."""


cli.add_command(serve.serve)
cli.add_command(migrate.migrate)
cli.add_command(send.send)
cli.add_command(transfer.export_cmd)
cli.add_command(transfer.import_cmd)
cli.add_command(settings_cmd)
cli.add_command(purge)
cli.add_command(reprocess_cmd)
cli.add_command(spool_cmd)


def main() -> None:
    """Entry point of the console script."""
    cli(prog_name="downlink")
