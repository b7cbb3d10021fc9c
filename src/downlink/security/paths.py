"""Which requests are ingest, which are always open, and which need an API token."""

from __future__ import annotations

from dataclasses import dataclass

from downlink.sources import registry
from downlink.sources.registry import Sources

# Endpoints that receive telemetry. They stay open when tokens are configured, unless
# DOWNLINK_COLLECTOR_AUTH is on. A source declares its own in ``Source.ingest_paths``;
# these are the ones of the protocols not yet moved to a source folder.
INGEST_PATHS = frozenset(("/", "/v2/collector", "/v3/collector", "/api/v1/records/bulk"))

# Websocket ingest: every source declares its own (``Source.ingest_websockets``).
INGEST_WEBSOCKETS: frozenset[str] = frozenset()

# Always open: liveness probes and the API description.
OPEN_PATHS = frozenset(("/-/health", "/-/version", "/docs", "/redoc", "/openapi.json"))


@dataclass(frozen=True)
class IngestPaths:
    """The paths that deliver telemetry: HTTP POST paths and websocket paths."""

    http: frozenset[str] = INGEST_PATHS
    websockets: frozenset[str] = INGEST_WEBSOCKETS

    def match(self, method: str, path: str) -> bool:
        """True for a request that delivers telemetry (``method`` "WEBSOCKET" for one)."""
        if method == "WEBSOCKET":
            return path in self.websockets
        return method == "POST" and path in self.http


CORE = IngestPaths()


def ingest_paths(sources: Sources) -> IngestPaths:
    """The core's ingest paths and every source's."""
    return IngestPaths(INGEST_PATHS | sources.ingest_paths,
                       INGEST_WEBSOCKETS | sources.ingest_websockets)


def builtin_ingest_paths() -> IngestPaths:
    """The core's ingest paths and those of the built-in and entry-point sources."""
    return ingest_paths(registry.load())


def is_ingest(method: str, path: str, paths: IngestPaths | None = None) -> bool:
    """True for a request that delivers telemetry (``method`` "WEBSOCKET" for websockets).

    ``paths`` defaults to the core's and the built-in sources'.
    """
    return (paths or builtin_ingest_paths()).match(method, path)


def is_open(path: str) -> bool:
    """True for a path that never needs a token."""
    return path in OPEN_PATHS or path.startswith("/docs/")
