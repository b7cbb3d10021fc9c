"""Which requests are ingest, which are always open, and which need an API token."""

from __future__ import annotations

# Endpoints that receive telemetry. They stay open when tokens are configured, unless
# DOWNLINK_COLLECTOR_AUTH is on. A new ingest protocol adds its path here.
INGEST_PATHS = frozenset(("/", "/v2/collector", "/v3/collector", "/api/v1/records/bulk"))

# Websocket ingest (substrate node telemetry), open like the collector.
INGEST_WEBSOCKETS = frozenset(("/", "/audit"))

# Always open: liveness probes, the API description and the shipped static files
# (scripts, styles: nothing from the database), which /docs needs.
OPEN_PATHS = frozenset(("/-/health", "/-/version", "/docs", "/openapi.json", "/favicon.ico"))


def is_ingest(method: str, path: str) -> bool:
    """True for a request that delivers telemetry (``method`` "WEBSOCKET" for websockets)."""
    if method == "WEBSOCKET":
        return path in INGEST_WEBSOCKETS
    return method == "POST" and path in INGEST_PATHS


def is_open(path: str) -> bool:
    """True for a path that never needs a token."""
    return path in OPEN_PATHS or path.startswith(("/docs/", "/static/"))
