"""MCE and Thermal: machine-check and thermal events from the patched mcelog records.

Both pages are the same kind of view (:func:`weekly_events`): a period of whole weeks
read from the MCE rollups, weekly charts with the partial weeks marked, a table with a
CSV twin; they differ in their filters, their read and their charts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from starlette.requests import Request

from downlink.sources.clearlinux.mce import CLASS_SEVERITY, MCE_PREFIX, THERMAL_CLASS
from downlink.sources.clearlinux.mce_analytics import FRESH, MceReads, mce_reads_of
from downlink.store.queries.period import Period
from downlink.web import params
from downlink.web.rendering import blank, chart, partial_marks, records_href, week_period
from downlink.web.views import Csv, View, router_of

Data = dict[str, Any]


def weekly_events(
    name: str,
    title: str,
    default_days: int,
    read: Callable[[MceReads], Callable[..., Mapping[str, Any]]],
    charts: Callable[[Data], list[dict[str, Any]]],
    csv: Csv,
    filters: Callable[[Mapping[str, str]], Mapping[str, Any]] = lambda _query: {},
    shown: Sequence[str] = (),
) -> View:
    """The view ``/<name>`` (template ``clearlinux/<name>.html``, tab ``name``).

    Its data is ``read(reads)(handle, period, **filters(query))``, ``reads`` being the
    MCE reads of the store that serves them (the SQL rollups, or ClickHouse when
    configured), after the period (``from``, ``to``, ``range``; ``default_days`` back
    from today) and the filters named in ``shown`` (answered as given, ``None`` when
    absent).
    """

    async def data(request: Request) -> Data:
        query = dict(request.query_params)
        period: Period = params.period(query, default_days)
        args = dict(filters(query))
        reads = mce_reads_of(request)
        found = await reads.read(partial(read(reads), **args), period)
        return {"period": period.as_json(), **{k: args[k] for k in shown}, **found}

    return View(
        f"/{name}",
        title,
        f"clearlinux/{name}.html",
        data,
        active=name,
        page=lambda _request, found: {"charts": charts(found)},
        fresh=FRESH,
        csv=csv,
    )


def week_labels(data: Data) -> list[str]:
    """The weeks' labels, the first marked when it starts before the period and the
    last while it is still filling."""
    weeks: list[str] = data["weeks"]
    return partial_marks(weeks, data["period"], next(iter(weeks), None))


# -- MCE ------------------------------------------------------------------------------

# telemetryui started on January 1st, mostly empty weeks early in the year; 90 days
# (13 weeks) is a steady window. Year to date is the "ytd" preset.
MCE_DAYS = 90
TOP_DEFAULT = 20


def _mce_filters(query: Mapping[str, str]) -> dict[str, Any]:
    return {
        "build": params.text(query, "build"),
        "top": params.integer(query, "top", 1, 500) or TOP_DEFAULT,
    }


# The classes' colours, by short name (the weekly lines) and by classification (the pie).
SEVERITY = {**CLASS_SEVERITY, **{MCE_PREFIX + name: n for name, n in CLASS_SEVERITY.items()}}


def _mce_records(data: Data, within: Mapping[str, str] | None = None,
                 classification: str = "") -> str:
    """The records of an MCE class (a short name or the classification), of the page's
    build, in ``within`` (by default the page's period)."""
    if "/" not in classification:
        classification = MCE_PREFIX + classification
    return records_href(within or data["period"], classification=classification,
                        build=data.get("build"))


def _mce_charts(data: Data) -> list[dict[str, Any]]:
    """Weekly counts per class, and counts by class, build and status; a point, a slice
    or a legend entry of the classes leads to the records it counts."""
    weeks = [week_period(w, data["period"]) for w in data["weeks"]]
    classes = [cls.rsplit("/", 1)[-1] for cls in data["weekly"]]
    return [
        chart(
            "chart-weekly",
            "line",
            week_labels(data),
            {  # legend in the order of urgency
                name: n
                for name, n in sorted(
                    ((cls.rsplit("/", 1)[-1], n) for cls, n in data["weekly"].items()),
                    key=lambda item: (SEVERITY.get(item[0], 0), item[0]),
                )
            },
            title="MCE per week",
            x_title="Week",
            y_title="Events",
            severity=SEVERITY,
            cell_links={c: [_mce_records(data, w, c) for w in weeks] for c in classes},
            legend_links={c: _mce_records(data, None, c) for c in classes},
        ),
        chart(
            "chart-class",
            "pie",
            [c for c, _ in data["by_class"]],
            {"Events": [n for _, n in data["by_class"]]},
            title="By class",
            severity=SEVERITY,
            links=[_mce_records(data, None, c) for c, _ in data["by_class"]],
        ),
        chart(
            "chart-build",
            "bar",
            [blank(b) for b, _ in data["by_build"]],
            {"Events": [n for _, n in data["by_build"]]},
            title="By build",
            x_title="Build",
            y_title="Events",
        ),
        chart(
            "chart-status",
            "bar",
            [blank(s) for s, _ in data["by_status"]],
            {"Events": [n for _, n in data["by_status"]]},
            title="By MCE status",
            x_title="MCE status",
            y_title="Events",
        ),
    ]


MCE = weekly_events(
    "mce",
    "Machine-check events",
    MCE_DAYS,
    lambda reads: reads.mce,
    _mce_charts,
    # The table: the top machines.
    Csv(
        "mce-machines",
        ("machine_id", "events", "builds"),
        lambda data: [(m["machine_id"], m["count"], m["builds"]) for m in data["top_machines"]],
    ),
    filters=_mce_filters,
    shown=("build",),
)


# -- Thermal --------------------------------------------------------------------------

THERMAL_WEEKS = 5


def _thermal_charts(data: Data) -> list[dict[str, Any]]:
    return [
        chart(
            "chart-thermal",
            "bar",
            week_labels(data),
            {"Thermal events": data["counts"]},
            title="Thermal events per week",
            x_title="Week of (Monday)",
            y_title="Events",
            severity={"Thermal events": CLASS_SEVERITY["thermal"]},
            links=[records_href(week_period(w, data["period"]), classification=THERMAL_CLASS)
                   for w in data["weeks"]],
        )
    ]


THERMAL = weekly_events(
    "thermal",
    "Thermal events",
    THERMAL_WEEKS * 7,
    lambda reads: reads.thermal,
    _thermal_charts,
    # Week (its Monday), events.
    Csv("thermal", ("week", "events"), lambda d: zip(d["weeks"], d["counts"], strict=True)),
)

router = router_of([MCE, THERMAL])
