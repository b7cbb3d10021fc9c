"""Crash triage over real HTTP, on both databases: trends, new and regressed builds,
per-build bars, the process beside the guilty frame, the group page's charts."""

from __future__ import annotations

import json
import re
import time
from html import unescape

import httpx

from downlink.sources.clearlinux.queries.crashes import build_news
from downlink.store.database import Store
from downlink.store.queries.period import Period, day_date
from downlink.testing.live import LiveServer
from tests.web.helpers import CRASH, OOPS, load, rec

DAY = 86400.0
CLR = "org.clearlinux/crash/clr"
KERNEL = "org.clearlinux/kernel/warning"


def test_build_news_against_the_builds_before() -> None:
    builds = ["100", "101", "102", "103"]
    assert build_news({"100", "101", "103"}, builds) == {"new_in": None, "regressed_in": "103"}
    assert build_news({"102", "103"}, builds) == {"new_in": "102", "regressed_in": None}
    assert build_news({"101", "103"}, builds) == {"new_in": "101", "regressed_in": "103"}
    assert build_news(set(builds), builds) == {"new_in": None, "regressed_in": None}
    assert build_news({"103"}, builds) == {"new_in": "103", "regressed_in": None}
    assert build_news(set(), builds) == {"new_in": None, "regressed_in": None}


def _fleet() -> list[dict[str, object]]:
    now = time.time()
    sleep = [("100", 0), ("101", 0), ("101", 0), ("103", 3), ("103", 0)]  # none on 102
    oops = [("102", 1), ("103", 0)]  # new in 102
    rows = [
        rec(
            classification=CLR,
            payload=CRASH,
            build=b,
            machine_id=f"s{i}",
            ts_reception=now - d * DAY,
        )
        for i, (b, d) in enumerate(sleep)
    ]
    rows += [
        rec(
            classification=KERNEL,
            payload=OOPS,
            build=b,
            machine_id=f"k{i}",
            ts_reception=now - d * DAY,
        )
        for i, (b, d) in enumerate(oops)
    ]
    return rows


def test_crash_list_and_group_page_show_trends_and_builds(db: Store, live: LiveServer) -> None:
    load(db, _fleet())
    period = Period.past(5)
    query = {"from": day_date(period.first).isoformat(), "to": day_date(period.last).isoformat()}
    with httpx.Client(base_url=live.url, timeout=30) as client:
        top = client.get("/crashes.json", params=query).json()["guilties"]
        by_function = {g["function"]: g for g in top}
        sleep, oops = by_function["clock_nanosleep@GLIBC_2.2.5()"], by_function["dump_stack"]
        assert (sleep["new_in"], sleep["regressed_in"]) == (None, "103")
        assert (oops["new_in"], oops["regressed_in"]) == ("102", None)
        # The process of each group's newest crash (a kernel oops names none).
        assert (sleep["process"], oops["process"]) == ("/usr/bin/sleep", None)
        # The package the guilty frame is in: its module's file name.
        assert (sleep["package"], oops["package"]) == ("libc.so.6", "kernel")
        # One count per day of the period, oldest first: today is the last.
        assert sleep["daily"] == [0, 1, 0, 0, 4]
        assert oops["daily"] == [0, 0, 0, 1, 1]
        one_build = client.get("/crashes.json", params={**query, "build": "103"}).json()
        assert {g["function"]: g["daily"] for g in one_build["guilties"]}[
            "clock_nanosleep@GLIBC_2.2.5()"
        ] == [0, 1, 0, 0, 1]

        page = client.get("/crashes", params=query)
        assert page.status_code == 200
        html = page.text
        assert "regressed in 103" in html and "new in 102" in html
        assert html.count('<span class="process muted"') == 1 and "in /usr/bin/sleep</span>" in html
        assert ">package libc.so.6</span>" in html and ">package kernel</span>" in html
        row = html.split(f'data-guilty="{sleep["guilty_id"]}"', 1)[1].split("</tr>", 1)[0]
        points = re.search(r'<polyline points="([^"]+)"', row)
        assert points is not None
        heights = [float(p.split(",")[1]) for p in points.group(1).split()]
        assert len(heights) == 5 and heights[4] == min(heights) and heights[0] == max(heights)
        # The per-build bar: a segment per build, each leading to its backtraces.
        links = [
            unescape(link)
            for link in re.findall(r'<a href="(/crashes/\d+/backtraces\?[^"]+)"><rect', row)
        ]
        assert [httpx.URL(link).params["build"] for link in links] == ["100", "101", "103"]
        assert "<title>101: 2</title>" in row
        bt = client.get(links[1])
        # Build 101's two crashes have the same backtrace: one card, both records.
        assert bt.status_code == 200 and bt.text.count('class="crash"') == 1
        assert "2 identical backtraces</strong> on 2 machines, build 101." in bt.text
        twin = client.get(links[1].replace("/backtraces?", "/backtraces.json?")).json()
        (stack,) = twin["stacks"]
        assert len(twin["crashes"]) == 2 and stack["record_ids"] == [
            c["record_id"] for c in twin["crashes"]
        ]
        assert stack["machines"] == ["s2", "s1"] and stack["builds"] == ["101"]
        # Seven frames, the guilty one first: frames 0-3 shown, 4-6 folded below.
        assert stack["shown"] == [0, 4]
        card = bt.text.split('class="crash"', 1)[1]
        assert '<details class="fold"><summary>3 frames below</summary>' in card
        assert card.count('<tr class="guilty">') == 1

        group = client.get(f"/crashes/{sleep['guilty_id']}.json", params=query).json()
        assert group["daily"] == [0, 1, 0, 0, 4]
        assert group["processes"] == [{"process": "/usr/bin/sleep", "records": 5}]
        html = client.get(f"/crashes/{sleep['guilty_id']}", params=query).text
        assert 'id="processes"' in html and "/usr/bin/sleep" in html
        assert re.search(r'id="package"[^>]*>package libc.so.6</span>', html)
        assert client.get(f"/crashes/{sleep['guilty_id']}.json", params=query).json()[
            "guilty"]["package"] == "libc.so.6"
        charts = json.loads(html.split('id="page-charts">', 1)[1].split("</script>", 1)[0])
        daily, builds = charts
        assert daily["labels"][-1] == query["to"] + " (so far)" and daily["datasets"][0][
            "data"
        ] == [
            0,
            1,
            0,
            0,
            4,
        ]
        assert builds["labels"] == ["100", "101", "103"]
        assert builds["datasets"][0]["data"] == [1, 2, 2]
