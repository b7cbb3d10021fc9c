"""The ``downlink`` command: a click group with one module per command."""

from __future__ import annotations

import click

from downlink import __version__
from downlink.cli import migrate, send, serve, transfer
from downlink.cli.archive import archive_cmd
from downlink.cli.consume import consume_cmd
from downlink.cli.partition import partition_cmd
from downlink.cli.purge import purge
from downlink.cli.reprocess import reprocess_cmd
from downlink.cli.senders import senders_cmd
from downlink.cli.settings import settings_cmd
from downlink.cli.spool import spool_cmd
from downlink.sources import registry


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
cli.add_command(archive_cmd)
cli.add_command(consume_cmd)
cli.add_command(senders_cmd)
cli.add_command(partition_cmd)

# Commands of the built-in and installed sources (``Source.extra["cli"]``, a click command).
for _source in registry.load():
    _command = _source.extra.get("cli")
    if isinstance(_command, click.Command):
        cli.add_command(_command)


def main() -> None:
    """Entry point of the console script."""
    cli(prog_name="downlink")
