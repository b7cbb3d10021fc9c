"""The ``downlink`` command line, one module per command."""
