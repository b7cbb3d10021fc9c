"""The OONI source's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter
from starlette.requests import HTTPConnection

from downlink.sources.runtime import metrics_of


class OoniMetrics:
    """Counters of submissions and their outcomes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.submissions = Counter(
            "downlink_ooni_submissions",
            "OONI measurement submissions, by outcome (stored, refused, discarded, "
            "unavailable, disconnected).",
            ["outcome"],
            registry=registry,
        )
        self.discarded = Counter(
            "downlink_ooni_discarded",
            "OONI submissions answered 200 {} and not stored, by reason (asn_0, cc_zz).",
            ["reason"],
            registry=registry,
        )
        self.refused = Counter(
            "downlink_ooni_refused",
            "OONI submissions refused, by HTTP status.",
            ["status"],
            registry=registry,
        )


def register(registry: CollectorRegistry) -> OoniMetrics:
    """Register the OONI metrics on ``registry`` (``Source.metrics``)."""
    return OoniMetrics(registry)


def of(conn: HTTPConnection) -> OoniMetrics:
    """This app's OONI metrics."""
    found: OoniMetrics = metrics_of(conn, "ooni")
    return found
