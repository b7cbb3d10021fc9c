"""Substrate's Prometheus metrics: node telemetry over websockets (docs/nodes.md).

Registered by ``Source.metrics`` in each server's registry; the websocket endpoint
reaches them as ``store.metrics.by_source["substrate"]``. The names are those the
core exported before sources had metrics of their own (``downlink_ws_*``).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass(frozen=True)
class WsMetrics:
    """The websocket endpoint's metrics."""

    connections: Gauge
    opened: Counter
    closed: Counter
    refused: Counter
    messages: Counter
    malformed: Counter
    received_bytes: Counter
    backpressure: Counter


def register(r: CollectorRegistry) -> WsMetrics:
    """Register substrate's metrics in ``r``."""
    return WsMetrics(
        connections=Gauge(
            "downlink_ws_connections",
            "Open node telemetry websockets, by endpoint.",
            ["endpoint"],
            registry=r,
            multiprocess_mode="livesum",
        ),
        opened=Counter(
            "downlink_ws_connections_opened",
            "Node telemetry websockets accepted, by endpoint.",
            ["endpoint"],
            registry=r,
        ),
        closed=Counter(
            "downlink_ws_connections_closed",
            "Node telemetry websockets closed, by reason.",
            ["reason"],
            registry=r,
        ),
        refused=Counter(
            "downlink_ws_connections_refused",
            "Node telemetry websockets refused before the handshake, by reason.",
            ["reason"],
            registry=r,
        ),
        messages=Counter(
            "downlink_ws_messages",
            "Node telemetry messages parsed, by message type ('other' for unlisted types).",
            ["msg"],
            registry=r,
        ),
        malformed=Counter(
            "downlink_ws_malformed_messages",
            "Node telemetry messages that could not be stored, by reason.",
            ["reason"],
            registry=r,
        ),
        received_bytes=Counter(
            "downlink_ws_received_bytes",
            "Bytes of node telemetry websocket messages received (malformed ones included).",
            registry=r,
        ),
        backpressure=Counter(
            "downlink_ws_backpressure_waits",
            "Times a node connection paused because the writer queue was full.",
            registry=r,
        ),
    )
