"""Substrate's settings, read into ``settings.sources["substrate"]`` (docs/settings.md).

They were core settings before sources had settings of their own; the websocket
ones were called ``DOWNLINK_WS_*`` and the purge batch ``DOWNLINK_PURGE_BATCH``.
Those names are still read (with a warning naming the new one) when the new one is
not set.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

from downlink.sources.base import SourceSetting

NAME = "substrate"


def _at_least(low: float) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value < low:
            raise ValueError(f"must be at least {low:g}")

    return check


def _not_negative(value: Any) -> None:
    if value < 0:
        raise ValueError("must not be negative")


def _positive(value: Any) -> None:
    if value <= 0:
        raise ValueError("must be positive")


def _networks(value: Any) -> None:
    for net in value:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ValueError(f"{net!r} is not a network") from None


def _ws(name: str, default: Any, help: str, check: Callable[[Any], None]) -> SourceSetting:
    env = name.upper()
    return SourceSetting(
        name, f"DOWNLINK_SUBSTRATE_{env}", default, help, check, old_env=(f"DOWNLINK_{env}",)
    )


SETTINGS: tuple[SourceSetting, ...] = (
    SourceSetting(
        "retention_hours",
        "DOWNLINK_SUBSTRATE_RETENTION_HOURS",
        3.0,
        "Hours substrate records received on ws:// / are kept; /audit records never expire.",
        _not_negative,
    ),
    SourceSetting(
        "purge_batch",
        "DOWNLINK_SUBSTRATE_PURGE_BATCH",
        2000,
        "Most records one purge transaction deletes (keeps the write lock short).",
        _at_least(1),
        old_env=("DOWNLINK_PURGE_BATCH",),
    ),
    _ws("ws_ping_interval_s", 5.0,
        "Seconds between websocket pings sent to nodes; 0 sends none.", _not_negative),
    _ws("ws_pong_timeout_s", 0.0,
        "Drop a node whose pong is this late (s); 0: pongs not required (modern nodes never "
        "pong).", _not_negative),
    _ws("ws_idle_timeout_s", 60.0,
        "Drop a node that sends no message for this many seconds; 0 turns it off.",
        _not_negative),
    _ws("ws_max_frame_bytes", 1024 * 1024,
        "Largest websocket message accepted from a node; larger closes it with code 1009.",
        _at_least(1)),
    _ws("ws_allow_networks", (),
        "Comma-separated CIDR networks allowed to stream node telemetry; empty allows all.",
        _networks),
    _ws("ws_rate_limit_bytes", 256 * 1024,
        "Bytes per second one node connection may send, averaged over the window; 0: no "
        "limit.", _not_negative),
    _ws("ws_rate_window_s", 10.0,
        "Window (s) over which DOWNLINK_SUBSTRATE_WS_RATE_LIMIT_BYTES is averaged.", _positive),
    _ws("ws_max_node_ids", 20,
        "Most distinct node ids (V2 `id`) one connection may carry; more are rejected.",
        _at_least(1)),
    _ws("ws_buffer_max", 1000,
        "Messages one connection buffers for the writer before it stops reading the socket.",
        _at_least(1)),
)


def of(settings: Any) -> Mapping[str, Any]:
    """Substrate's effective settings from a ``Settings``."""
    values: Mapping[str, Any] = settings.sources[NAME]
    return values
