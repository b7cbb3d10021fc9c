"""The aggregation rollups give exactly what grouping the fastpath rows gives.

Random fastpath rows are written, rescored (flags changed), partly deleted by reception
range and purged by uid, through the fastpath writer; after each step every kind of
request (axes, filters, grains, ranges with unaligned ends) is answered from the
rollups and compared with a count over the rows kept in Python. On both databases.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine

from downlink.settings import Settings
from downlink.sources.ooni import aggregation, fastpath_store, rollup
from downlink.store import migrate
from downlink.store.engine import _normalise

T0 = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
CCS = ("IT", "IR", "DE")
TESTS = ("web_connectivity", "telegram")
DOMAINS = ("a.example", "b.example", "")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    settings = Settings(database_url=db_url)
    eng = create_engine(_normalise(db_url))
    migrate.upgrade(eng, sources=settings.registry)
    try:
        yield eng
    finally:
        eng.dispose()


def _row(i: int, rng: random.Random) -> dict[str, Any]:
    return {
        "measurement_uid": f"u{i:06d}",
        "report_id": "r",
        "input": f"https://{rng.choice(DOMAINS)}/",
        "probe_cc": rng.choice(CCS),
        "probe_asn": rng.choice((3269, 44244, 1)),
        "test_name": rng.choice(TESTS),
        "test_start_time": None,
        # Over 10 days, including the exact bucket boundaries.
        "measurement_start_time": T0 + rng.choice((0, 3600, 86400))
        + rng.random() * 10 * 86400,
        "filename": "", "scores": "{}", "platform": "", "anomaly": rng.random() < 0.3,
        "confirmed": rng.random() < 0.1, "msm_failure": rng.random() < 0.1,
        "domain": rng.choice(DOMAINS), "software_name": "", "software_version": "",
        "control_failure": "", "blocking_general": 0.0, "is_ssl_expected": 0, "page_len": 0,
        "page_len_ratio": 0.0, "server_cc": "", "server_asn": 0, "server_as_name": "",
        "test_version": "", "architecture": "", "engine_name": "", "engine_version": "",
        "test_runtime": 0.0, "blocking_type": rng.choice(("", "dns", "http-failure")),
        "test_helper_address": "", "test_helper_type": "", "ooni_run_link_id": None,
        "is_verified": "u",
    }


def _expected(rows: dict[str, dict[str, Any]], agg: aggregation.Aggregation) -> list[Any]:
    lo, hi = agg.since.timestamp(), agg.until.timestamp()
    merged: dict[tuple[Any, ...], list[int]] = {}
    for r in rows.values():
        t = r["measurement_start_time"]
        if not lo <= t < hi or any(r[k] not in v for k, v in agg.eq.items()):
            continue
        key: list[Any] = []
        for axis in agg.axes:
            if axis == "measurement_start_day":
                step = 3600 if agg.grain == "hour" else 86400
                key.append(aggregation._fold(
                    datetime.fromtimestamp(int(t // step) * step, UTC), agg.grain))
            else:
                key.append(r[axis])
        acc = merged.setdefault(tuple(key), [0] * 5)
        for j, n in enumerate(rollup.counts(r["anomaly"], r["confirmed"], r["msm_failure"])):
            acc[j] += n
    return sorted((k, v) for k, v in merged.items())


def _got(engine: Engine, agg: aggregation.Aggregation) -> list[Any]:
    with engine.connect() as conn:
        rows = aggregation.run(conn, agg)
    out = []
    for item in rows:
        key = []
        for axis in agg.axes:
            value = item[axis]
            if axis == "measurement_start_day":
                fmt = "%Y-%m-%dT%H:%M:%SZ" if agg.grain == "hour" else "%Y-%m-%d"
                value = datetime.strptime(value, fmt).replace(tzinfo=UTC)
            key.append(value)
        counts = [item[c] for c in aggregation.COUNTS]
        if agg.axes or counts[-1]:
            out.append((tuple(key), counts))
    return sorted(out)


REQUESTS = [
    {"axis_x": "measurement_start_day"},
    {"axis_x": "measurement_start_day", "time_grain": "hour"},
    {"axis_x": "measurement_start_day", "axis_y": "probe_asn", "time_grain": "week"},
    {"axis_x": "probe_cc", "axis_y": "blocking_type"},
    {"axis_x": "domain", "probe_cc": "IR,IT"},
    {"axis_x": "measurement_start_day", "domain": "a.example"},
    {"axis_x": "input", "test_name": "web_connectivity"},
    {"axis_x": "test_name", "probe_asn": "AS3269"},
    {},
]
RANGES = [
    ("2026-03-01", "2026-03-11"),               # whole days
    ("2026-03-02T05:30:00", "2026-03-04T17:10:00"),  # partial hours and days at both ends
    ("2026-03-03T01:00:00", "2026-03-03T03:00:00"),  # whole hours, no whole day
    ("2026-03-05T10:20:00", "2026-03-05T10:40:00"),  # inside one hour
]


def _check(engine: Engine, rows: dict[str, dict[str, Any]]) -> None:
    for since, until in RANGES:
        days = (datetime.fromisoformat(until) - datetime.fromisoformat(since)) / timedelta(days=1)
        for req in REQUESTS:
            if req.get("time_grain") == "hour" and days > 7:
                continue
            if req.get("time_grain") == "week" and days <= 7:
                continue
            agg = aggregation.parse({**req, "since": since, "until": until})
            assert _got(engine, agg) == _expected(rows, agg), (since, until, req)


def test_rollups_equal_counting_the_rows(engine: Engine) -> None:
    rng = random.Random(7)
    rows = {r["measurement_uid"]: r for r in (_row(i, rng) for i in range(1500))}
    received = [T0 + i for i in range(len(rows))]
    with engine.begin() as conn:
        fastpath_store.upsert(conn, list(rows.values()), received)
    _check(engine, rows)

    # Rescoring replaces rows: new flags and blocking types, some moved in time.
    changed = []
    for uid in rng.sample(sorted(rows), 400):
        new = {**_row(int(uid[1:]), rng), "measurement_uid": uid}
        rows[uid] = new
        changed.append(new)
    with engine.begin() as conn:
        fastpath_store.upsert(conn, changed, [T0 + int(r["measurement_uid"][1:]) for r in changed])
    _check(engine, rows)

    # A reprocess's reset (by reception time) and a purge (by uid) subtract.
    with engine.begin() as conn:
        fastpath_store.delete_received(conn, T0 + 100, T0 + 300)
        gone = sorted(rows)[900:1000]
        fastpath_store.delete_uids(conn, gone)
    for uid in [*sorted(rows)[100:300], *gone]:
        rows.pop(uid, None)
    _check(engine, rows)

    # A rebuild from the rows counts the same.
    with engine.begin() as conn:
        rollup.rebuild(conn)
    _check(engine, rows)


def test_pieces_cover_the_range_once() -> None:
    since = datetime(2026, 3, 2, 5, 30, tzinfo=UTC).timestamp()
    until = datetime(2026, 3, 4, 17, 10, tzinfo=UTC).timestamp()
    parts = aggregation.pieces({"probe_cc"}, 86400, since, until)
    spans = sorted((lo, hi) for _lv, lo, hi in parts)
    assert spans[0][0] == since and spans[-1][1] == until
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    kinds = {(lv.table.name if lv else "ooni_fastpath") for lv, _lo, _hi in parts}
    assert kinds == {"ooni_agg_day_cc", "ooni_agg_hour_cc", "ooni_fastpath"}
    # A dimension no rollup has: the rows themselves.
    assert aggregation.pieces({"input"}, 86400, since, until) == [(None, since, until)]
