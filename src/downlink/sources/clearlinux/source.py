"""The Clear Linux source: for now only its consumers (crash grouping and rollups).

Its wire format, endpoints, tables, queries and pages are still in the core
(``ingest/``, ``store/``, ``web/pages/``) until they move into this folder.
"""

from __future__ import annotations

from downlink.sources.base import Source
from downlink.sources.clearlinux.consumers import CONSUMERS


def source() -> Source:
    """The Clear Linux source."""
    return Source(name="clearlinux", title="Clear Linux", consumers=CONSUMERS)
