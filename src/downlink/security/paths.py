"""Which requests are ingest, which are always open, and which need an API token."""

from __future__ import annotations

from dataclasses import dataclass

from downlink.sources import registry
from downlink.sources.registry import Sources

# Endpoints that receive telemetry. They stay open when tokens are configured, unless
# DOWNLINK_COLLECTOR_AUTH is on. Every source declares its own (``Source.ingest_paths``):
# the core has none.
INGEST_PATHS: frozenset[str] = frozenset()

# Websocket ingest: every source declares its own (``Source.ingest_websockets``).
INGEST_WEBSOCKETS: frozenset[str] = frozenset()

# Always open: liveness probes, the API description and the shipped static files
# (scripts, styles: nothing from the database), which /docs needs.
OPEN_PATHS = frozenset(("/-/health", "/-/version", "/docs", "/openapi.json", "/favicon.ico"))


@dataclass(frozen=True)
class IngestPaths:
    """The paths that deliver telemetry: HTTP POST paths and websocket paths.

    ``prefixes``: POST path prefixes that deliver telemetry (``Source.ingest_prefixes``:
    OONI's ``/report/{report_id}``). ``reads``: paths a sender (or the public) reads
    without a token, GET/HEAD only (``Source.open_reads``: fuel-stats' ping, which its
    sender calls before every upload, and its public report).
    """

    http: frozenset[str] = INGEST_PATHS
    websockets: frozenset[str] = INGEST_WEBSOCKETS
    reads: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    def match(self, method: str, path: str) -> bool:
        """True for a request that delivers telemetry (``method`` "WEBSOCKET" for one)."""
        if method == "WEBSOCKET":
            return path in self.websockets
        if method in ("GET", "HEAD"):
            return path in self.reads
        return method == "POST" and (path in self.http or path.startswith(self.prefixes))


CORE = IngestPaths()


def ingest_paths(sources: Sources) -> IngestPaths:
    """The core's ingest paths and every source's."""
    reads = frozenset(p for s in sources for p in s.open_reads)
    prefixes = tuple(p for s in sources for p in s.ingest_prefixes)
    return IngestPaths(INGEST_PATHS | sources.ingest_paths,
                       INGEST_WEBSOCKETS | sources.ingest_websockets, reads, prefixes)


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
    return path in OPEN_PATHS or path.startswith(("/docs/", "/static/"))
