"""Substrate/tetcore node telemetry over websockets (docs/nodes.md)."""
