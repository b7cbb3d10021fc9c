"""Helpers of the Clear Linux consumer tests: every dashboard's JSON twin, and the
derived data recounted from ``records`` alone."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, select

from downlink.sources.clearlinux.backtrace import BACKTRACE_CLASSES, find_guilty
from downlink.sources.clearlinux.crashes import load_blacklist
from downlink.sources.clearlinux.mce import MCE_CLASSES
from downlink.sources.clearlinux.rollups import MCE_PREFIX, day_of, mce_status, month_of, week_of
from downlink.sources.clearlinux.tables import (
    guilty,
    rollup_class_daily,
    rollup_guilty,
    rollup_guilty_machine_totals,
    rollup_guilty_machines,
    rollup_machines,
    rollup_mce_daily,
    rollup_mce_machines,
    rollup_mce_statuses,
)
from downlink.store.tables import records


def twins(http: httpx.Client, days: int) -> dict[str, Any]:
    """Every JSON twin of a dashboard fed by derived data, over ``days`` days, on every
    crash group."""
    since = (datetime.now(UTC).date() - timedelta(days=days)).isoformat()
    paths = [
        "/stats.json", f"/stats.json?from={since}",
        f"/stats.json?from={since}&classification=org.clearlinux/crash/*",
        "/builds.json", f"/builds.json?from={since}&severity=3",
        "/crashes.json", f"/crashes.json?from={since}",
        "/mce.json", f"/mce.json?from={since}", "/thermal.json",
        "/population.json", f"/population.json?from={since}&bucket=week",
        f"/population.json?from={since}&bucket=month",
        "/plugins/severity.json",
    ]
    out: dict[str, Any] = {}
    for path in paths:
        answer = http.get(path)
        assert answer.status_code == 200, (path, answer.text)
        out[path] = answer.json()
    for group in out[f"/crashes.json?from={since}"]["guilties"]:
        gid = group["guilty_id"]
        for path in (f"/crashes/{gid}.json?from={since}", f"/crashes/{gid}/backtraces.json"):
            answer = http.get(path)
            assert answer.status_code == 200, (path, answer.text)
            out[path] = answer.json()
    return out


def recount(engine: Engine) -> dict[str, Any]:
    """What the consumers must have derived, counted again from the records, beside
    what they did derive."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(records.c.id, records.c.source, records.c.classification,
                   records.c.ts_reception, records.c.build, records.c.machine_id,
                   records.c.payload, records.c.guilty_id)
        ).all()
        blacklist = load_blacklist(conn)
        frames = {(f, m): i for i, f, m in conn.execute(
            select(guilty.c.id, guilty.c.function, guilty.c.module))}
        got = {
            "per_class": Counter({(d, c): n for d, c, n in conn.execute(
                select(rollup_class_daily.c.day, rollup_class_daily.c.classification,
                       rollup_class_daily.c.count))}),
            "per_group": Counter(),
            "machines": {tuple(r) for r in conn.execute(select(rollup_machines))},
            "group_machines": {tuple(r) for r in conn.execute(select(
                rollup_guilty_machines.c.day, rollup_guilty_machines.c.guilty_id,
                rollup_guilty_machines.c.build, rollup_guilty_machines.c.machine_id,
                rollup_guilty_machines.c.count))},
            "totals": {tuple(r[:4]) for r in conn.execute(select(rollup_guilty_machine_totals))},
            "mce_machines": Counter({tuple(r[:4]): r[4] for r in conn.execute(
                select(rollup_mce_machines))}),
            "mce_daily": Counter({tuple(r[:3]): r[3] for r in conn.execute(
                select(rollup_mce_daily))}),
            "mce_statuses": {tuple(r) for r in conn.execute(select(rollup_mce_statuses))},
        }
        for d, g, _b, n in conn.execute(select(rollup_guilty.c.day, rollup_guilty.c.guilty_id,
                                               rollup_guilty.c.build, rollup_guilty.c.count)):
            got["per_group"][(d, g)] += n
    want: dict[str, Any] = {"per_class": Counter(), "per_group": Counter(), "machines": set(),
                            "group_machines": Counter(), "totals": Counter(),
                            "mce_machines": Counter(), "mce_daily": Counter(),
                            "mce_statuses": {}, "wrong_group": []}
    for rid, source, cls, ts, build, machine, payload, gid in rows:
        if source != "clearlinux":
            continue
        day = day_of(ts)
        want["per_class"][(day, cls)] += 1
        for grain, period in (("d", day), ("w", week_of(day)), ("m", month_of(day))):
            want["machines"].add((grain, period, build, machine))
        if cls.startswith(MCE_PREFIX):
            want["mce_machines"][(week_of(day), cls, build, machine)] += 1
            want["mce_daily"][(day, cls, build)] += 1
        if cls in MCE_CLASSES:
            status = mce_status(payload or "")
            n, first, last = want["mce_statuses"].get(status, (0, day, day))
            want["mce_statuses"][status] = (n + 1, min(first, day), max(last, day))
        if cls in BACKTRACE_CLASSES:
            found = find_guilty(payload or "", blacklist)
            expected = None if found is None else frames.get(found, -1)
            if gid != expected:
                want["wrong_group"].append(rid)
            if gid is not None:
                want["per_group"][(day, gid)] += 1
                want["group_machines"][(day, gid, build, machine)] += 1
                want["totals"][(gid, build, machine)] += 1
    want["group_machines"] = {(*k, n) for k, n in want["group_machines"].items()}
    want["totals"] = {(*k, n) for k, n in want["totals"].items()}
    want["mce_statuses"] = {(k, *v) for k, v in want["mce_statuses"].items()}
    got["wrong_group"] = []
    # rollup_machines rows carry no count; rollup_population must match them too.
    return {"got": got, "want": want}
