"""Which requests are ingest, which are always open, and which need an API token."""

from __future__ import annotations

# Endpoints that receive telemetry. They stay open when tokens are configured, unless
# DOWNLINK_COLLECTOR_AUTH is on. A new ingest protocol adds its path here.
INGEST_PATHS = frozenset(("/", "/v2/collector", "/v3/collector", "/api/v1/records/bulk"))

# Always open: liveness probes and the API description.
OPEN_PATHS = frozenset(("/-/health", "/-/version", "/docs", "/redoc", "/openapi.json"))


def is_ingest(method: str, path: str) -> bool:
    """True for a request that delivers telemetry."""
    return method == "POST" and path in INGEST_PATHS


def is_open(path: str) -> bool:
    """True for a path that never needs a token."""
    return path in OPEN_PATHS or path.startswith("/docs/")
