"""``python -m downlink`` runs the CLI."""

from downlink.cli.main import main

main()
