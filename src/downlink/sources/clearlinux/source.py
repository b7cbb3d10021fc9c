"""The Clear Linux source: telemetrics-client records, crash groups and dashboards.

Records come one per request to ``/v2/collector``, ``/v3/collector`` and ``/``
(:mod:`.collector`, the hot path, served past the middleware by the application's
direct routes) or many per request to ``/api/v1/records/bulk`` (:mod:`.bulk`), parsed
and validated by :mod:`.wire`, and stored as ``records`` rows with ``source =
"clearlinux"``. In each batch's transaction the writer groups crashes by their guilty
frame (:mod:`.crashes`, :mod:`.backtrace`) and keeps the dashboards' rollups
(:mod:`.rollups`); a "never guilty" edit regroups them in a background job, a
revision of the crash consumer's records (:mod:`.regroup`). The pages (``/builds``,
``/stats``, ``/crashes``, ``/mce``, ``/thermal``, ``/population``: :mod:`.pages`) read
:mod:`.queries`.

Its tables (:mod:`.tables`) were created by the core migrations ``0001`` to ``0017``,
which predate source migrations, so those stay in the core chain; the tables and
indexes added since are revisions of its own branch, ``sources/clearlinux/migrations``
(``clearlinux_0001_mce_statuses``: the MCE rollups sized to the charts).
"""

from __future__ import annotations

from pathlib import Path

from downlink.sources.base import Archive, NavEntry, Source, SourceSetting
from downlink.sources.clearlinux import analytics, bulk, collector, crash_analytics, tables
from downlink.sources.clearlinux.consumers import CONSUMERS
from downlink.sources.clearlinux.pages import builds, crashes, mce, population, stats
from downlink.sources.clearlinux.queries.crashes import EXACT_MACHINES_MAX
from downlink.sources.clearlinux.queries.search import search
from downlink.sources.clearlinux.wire import SENDER_RULE, SOURCE

HERE = Path(__file__).parent

def _not_negative(value: int) -> None:
    if value < 0:
        raise ValueError("must not be negative")


SETTINGS = (
    SourceSetting(
        "crash_exact_machines",
        "DOWNLINK_CRASH_EXACT_MACHINES",
        EXACT_MACHINES_MAX,
        "Up to this many crash records of the groups shown in the period, the crash pages "
        "count affected machines exactly (about 2 us of CPU a record on a group's page); "
        "above it they estimate them from sketches, marked ≈ (about 1.6 % error, bounded "
        "time).",
        _not_negative,
    ),
)


def source() -> Source:
    """The Clear Linux source."""
    return Source(
        name=SOURCE,
        title="Clear Linux telemetry",
        routers=(
            bulk.router,
            builds.router,
            stats.router,
            crashes.router,
            mce.router,
            population.router,
        ),
        routes=tuple(collector.routes),
        direct_posts={path: collector.collect for path in collector.PATHS},
        openapi_paths=collector.openapi_paths,
        ingest_paths=frozenset({*collector.PATHS, bulk.PATH}),
        metadata=tables.metadata,
        migrations=HERE / "migrations",
        nav=(
            NavEntry("builds", "Builds", "/builds", keeps_period=True),
            NavEntry("stats", "Stats", "/stats", keeps_period=True),
            NavEntry("crashes", "Crashes", "/crashes", keeps_period=True),
            NavEntry("mce", "MCE", "/mce", keeps_period=True),
            NavEntry("thermal", "Thermal", "/thermal", keeps_period=True),
            NavEntry("population", "Population", "/population", keeps_period=True),
        ),
        templates=HERE / "templates",
        settings=SETTINGS,
        consumers=CONSUMERS,
        senders=SENDER_RULE,
        # Its records, as NDJSON by day in the raw archive (downlink archive).
        archives=(Archive("records", "records", where=lambda t: t.c.source == SOURCE),),
        search=search,
        search_template="clearlinux/_search.html",
        record_template="clearlinux/_record.html",
        # On ClickHouse when configured: the dashboards and MCE pages read the core's
        # ``records`` table there, the crash pages ``clearlinux_crashes``.
        analytics_tables=(crash_analytics.TABLE,),
        analytics_reads=analytics.reads,
    )
