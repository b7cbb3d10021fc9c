"""Example web plug-in: records per day and severity, from a daily rollup.

Enabled by default (``DOWNLINK_WEB_PLUGINS=downlink.sources.clearlinux.severity_plugin``;
it was ``downlink.web.example_plugin``, still accepted); it shows at
``/plugins/severity`` and ``/plugins/severity.json``. Copy it to start a plug-in of
your own: a module with ``register(registry)`` is all a plug-in needs.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from downlink.sources.clearlinux.tables import rollup_class_daily
from downlink.store.queries.period import day_date
from downlink.web.plugins import PluginQuery, PluginRegistry, PluginView
from downlink.web.rendering import chart

SEVERITIES = (1, 2, 3, 4)


def severity_per_day(conn: Connection, query: PluginQuery) -> dict[str, Any]:
    """Return records per day for each severity in the period."""
    t = rollup_class_daily
    stmt = query.period.where(
        select(t.c.day, t.c.severity, func.sum(t.c.count)).group_by(t.c.day, t.c.severity), t
    )
    classification = query.params.get("classification")
    if classification:
        stmt = stmt.where(t.c.classification == classification)
    days = list(range(query.period.first, query.period.last + 1))
    series = {s: [0] * len(days) for s in SEVERITIES}
    for day, severity, n in conn.execute(stmt):
        if int(severity) in series:
            series[int(severity)][int(day) - query.period.first] = int(n)
    labels = [day_date(d).isoformat() for d in days]
    return {
        "days": labels,
        "series": {str(s): v for s, v in series.items()},
        "table": {
            "columns": ["day", *[f"severity {s}" for s in SEVERITIES]],
            "rows": [[labels[i], *[series[s][i] for s in SEVERITIES]] for i in range(len(days))],
        },
    }


def severity_charts(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One stacked column chart of the series."""
    return [
        chart(
            "chart-severity",
            "bar",
            data["days"],
            {f"severity {s}": v for s, v in data["series"].items()},
            title="Records per day by severity",
            stacked=True,
            severity={f"severity {s}": s for s in SEVERITIES},
        )
    ]


def register(registry: PluginRegistry) -> None:
    """Register the example view."""
    registry.add_view(
        PluginView(
            name="severity",
            title="Severity",
            data=severity_per_day,
            charts=severity_charts,
            description="Records per day by severity (example plug-in).",
        )
    )
