"""The crash group page over real HTTP, on both databases: exact and estimated counts.

A group with over ``RANK_FROM_TOTALS_MIN`` crashes over ten days is loaded through the
writer's processors; a real ``downlink serve`` then answers its page and JSON twin for
the whole history (machines ranked from the all-time totals) and for a shorter period
(straddled by repeat machines). Counts are exact by default and estimated, flagged and
marked "≈", when ``DOWNLINK_CRASH_EXACT_MACHINES`` is below the group's crashes; the
machine list is exact either way.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from downlink.sources.clearlinux.queries.crashes import RANK_FROM_TOTALS_MIN
from downlink.store.database import Store
from downlink.store.queries.period import Period, day_date
from downlink.testing.live import LiveServer
from tests.sources.clearlinux.crash_spread import (
    HISTORY_DAYS,
    crash_rows,
    expected_builds,
    expected_machine_count,
    expected_machines,
)
from tests.web.helpers import load


def _query(period: Period, **more: object) -> dict[str, object]:
    return {
        "from": day_date(period.first).isoformat(),
        "to": day_date(period.last).isoformat(),
        **more,
    }


def _serve(db_url: str, log: Path, **env: str) -> LiveServer:
    return LiveServer(db_url, env=env, log=log).start()


def test_crash_group_counts_exact_then_estimated_list_exact(
    db: Store, db_url: str, tmp_path: Path
) -> None:
    rows = crash_rows(singles=RANK_FROM_TOTALS_MIN + 200)
    for start in range(0, len(rows), 2000):
        load(db, rows[start : start + 2000])
    whole, recent = Period.past(HISTORY_DAYS), Period.past(6)
    log = tmp_path / "server.log"

    for estimated in (False, True):
        env = {"DOWNLINK_CRASH_EXACT_MACHINES": "0"} if estimated else {}
        server = _serve(db_url, log, **env)
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                (top,) = client.get("/crashes.json", params=_query(whole)).json()["guilties"]
                assert top["machines_estimated"] is estimated
                gid = top["guilty_id"]
                for period in (whole, recent):
                    everything = expected_machines(rows, period)
                    builds = expected_builds(rows, period)
                    first = client.get(f"/crashes/{gid}.json", params=_query(period)).json()
                    assert first["records"] == sum(n for _, n in builds.values())
                    assert first["machines_estimated"] is estimated
                    exact = expected_machine_count(rows, period)
                    got = {b["build"]: (b["machines"], b["records"]) for b in first["builds"]}
                    assert set(got) == set(builds)
                    if estimated:
                        assert abs(first["machines_total"] - exact) <= exact * 0.05
                        for b, (machines, crashes) in builds.items():
                            assert got[b][1] == crashes
                            assert abs(got[b][0] - machines) <= machines * 0.05
                    else:
                        assert first["machines_total"] == exact
                        assert got == builds
                    # The list is exact either way, page after page.
                    assert first["machines"] == everything[:200]
                    assert first["next_offset"] == 200
                    for offset in (150, len(everything) - 120):
                        page = client.get(
                            f"/crashes/{gid}.json", params=_query(period, offset=offset)
                        ).json()
                        assert page["machines"] == everything[offset : offset + 200]
                        more = offset + 200 < len(everything)
                        assert page["next_offset"] == (offset + 200 if more else None)
                html = client.get(f"/crashes/{gid}", params=_query(whole)).text
                count = html.split('id="machines-count">', 1)[1].split("</p>", 1)[0]
                assert ("≈" in count) is estimated
                if not estimated:
                    assert f"{expected_machine_count(rows, whole):,} machines" in count
        finally:
            server.stop()
