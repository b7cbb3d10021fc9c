"""The UI as a person uses it: headless Chromium against a real ``downlink serve``.

Skipped (with the reason) only when Debian's ``chromium`` is not installed. On the
embedded SQLite store only: what the browser does with a page (scripts, charts, forms,
layout) does not depend on the database, and every page's answers are checked over
HTTP on both databases (``test_pages``, ``test_csv``, each source's view tests).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from downlink.settings import Settings
from downlink.store.database import Store
from downlink.testing.consumers import wait_caught_up
from downlink.testing.live import LiveServer
from tests.sources.fuelstats.client import minimal, ok, post
from tests.sources.ooni.test_api_http import load as load_ooni
from tests.web.helpers import CRASH, load, rec, sample_fleet

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCRIPT = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'

pytestmark = [
    pytest.mark.browser,
    pytest.mark.databases("sqlite"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _with_fleet(server: LiveServer) -> LiveServer:
    store = Store(Settings(database_url=server.database_url))
    try:
        load(store, sample_fleet(SCRIPT, second_build="31001"))
    finally:
        store.close()
    return server


@pytest.fixture(scope="module")
def site(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with the sample fleet, shared by the tests that only read it (most)."""
    server = LiveServer(module_db_url, log=tmp_path_factory.mktemp("site") / "server.log")
    try:
        yield _with_fleet(server.start())
    finally:
        server.stop()


@pytest.fixture
def fresh_site(live: LiveServer) -> LiveServer:
    """A server of this test's own with the sample fleet: for a test that changes data
    (adds records or nodes, hides or regroups crashes)."""
    return _with_fleet(live)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    pg = context.new_page()
    pg.errors = []  # type: ignore[attr-defined]
    pg.dialogs = []  # type: ignore[attr-defined]
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    try:
        yield pg
    finally:
        context.close()


def _charts_drawn(page: Any) -> int:
    page.wait_for_function(
        "document.querySelectorAll('canvas').length === "
        "document.querySelectorAll('canvas[data-rendered]').length"
    )
    return int(
        page.evaluate(
            "Array.from(document.querySelectorAll('canvas')).filter("
            "c => c.width > 0 && c.height > 0 && Chart.getChart(c) !== undefined).length"
        )
    )


@pytest.mark.parametrize(
    "path, title, charts",
    [
        ("/builds", "Builds", 1),
        ("/stats", "Stats", 4),
        ("/crashes", "Crashes", 1),
        ("/mce", "Machine-check events", 4),
        ("/thermal", "Thermal events", 1),
        ("/population", "Population", 1),
        ("/plugins/severity", "Severity", 1),
    ],
)
def test_each_dashboard_draws_its_charts(
    site: LiveServer, page: Any, path: str, title: str, charts: int
) -> None:
    page.goto(site.url + path)
    assert page.inner_text("h1") == title
    assert _charts_drawn(page) == charts
    assert page.errors == []


def test_navigation_bar_reaches_every_view(site: LiveServer, page: Any) -> None:
    page.goto(site.url + "/records")
    for label, h1 in (
        ("Builds", "Builds"),
        ("Stats", "Stats"),
        ("Crashes", "Crashes"),
        ("MCE", "Machine-check events"),
        ("Thermal", "Thermal events"),
        ("Population", "Population"),
        ("Severity", "Severity"),
        ("Nodes", "Nodes"),
        ("Records", "Records"),
    ):
        page.click(f"nav.top >> text={label}")
        assert page.inner_text("h1") == h1
        assert page.get_attribute("nav.top a.active", "href") is not None


def test_records_search_form_filters(site: LiveServer, page: Any) -> None:
    page.goto(site.url + "/records")
    assert page.locator("#records tbody tr").count() == 9
    page.fill("input[name=classification]", "org.clearlinux/crash/*")
    page.select_option("select[name=severity]", "3")
    with page.expect_navigation():
        page.click("#record-search button[type=submit]")
    rows = page.locator("#records tbody tr")
    assert rows.count() == 2
    assert set(rows.locator("td:nth-child(6)").all_inner_texts()) == {"org.clearlinux/crash/clr"}
    page.fill("#record-search input[name=q]", "no such payload text")
    with page.expect_navigation():
        page.click("#record-search button[type=submit]")
    assert "No records match" in page.inner_text("#records")


def test_script_payload_stays_inert(site: LiveServer, page: Any) -> None:
    page.goto(site.url + "/records?classification=org.clearlinux/journal/error")
    page.click("#records tbody tr:first-child td:first-child a")
    assert "<script>window.pwned = 1</script>" in page.inner_text("#payload")
    page.wait_for_load_state("load")
    assert page.evaluate("window.pwned") is None
    assert page.dialogs == []
    assert page.locator("#payload script, #payload img").count() == 0


def test_date_range_filter_empties_a_dashboard(site: LiveServer, page: Any) -> None:
    page.goto(site.url + "/builds")
    assert page.locator("#builds tbody tr").count() == 3
    page.fill("input[name=from]", "2001-01-01")
    page.fill("input[name=to]", "2001-01-31")
    with page.expect_navigation():
        page.click("#filters button[type=submit]")
    assert "No records in this period" in page.inner_text("#builds")
    # An empty chart says so instead of drawing an empty grid.
    page.wait_for_selector("#chart-builds[data-rendered]", state="attached")
    assert page.inner_text(".chart .empty-chart") == "No data in this period."
    assert page.locator("#chart-builds").is_hidden()
    page.goto(site.url + "/population")
    page.select_option("select[name=bucket]", "week")
    with page.expect_navigation():
        page.click("#filters button[type=submit]")
    assert "bucket=week" in page.url
    assert page.locator("#population tbody tr").count() == 3


def test_mark_a_frame_never_guilty_regroups_the_crashes(fresh_site: LiveServer, page: Any) -> None:
    page.goto(fresh_site.url + "/crashes")
    first = page.locator("#guilties tbody tr").first
    assert (
        first.locator(".guilty-link").inner_text() == "clock_nanosleep@GLIBC_2.2.5() - [libc.so.6]"
    )
    assert first.locator(".total").inner_text() == "2"
    with page.expect_navigation():
        first.locator(".guilty-link").click()
    page.wait_for_selector("#machines")
    assert page.locator("#machines tbody tr").count() == 2
    assert "2 machines." in page.inner_text("#machines-count")
    page.click("#all-backtraces")
    crash = page.locator(".crash").first
    highlighted = crash.locator("tr.guilty")
    assert highlighted.count() == 1
    assert "clock_nanosleep@GLIBC_2.2.5()" in highlighted.inner_text()
    highlighted.locator("input[type=checkbox]").check()
    crash.locator("input[name=why]").fill("sleep wrapper, never the cause")
    crash.locator("input[name=who]").fill("ada")
    crash.locator("button.mark").click()
    page.wait_for_url("**/crashes")
    # The regroup runs in the background; the page says so until it is done.
    first = _wait_for_regroup(fresh_site)
    page.reload()
    assert page.locator("#regroup").count() == 0
    labels = page.locator("#guilties .guilty-link").all_inner_texts()
    assert labels[0] == "__nanosleep() - [libc.so.6]"
    assert "clock_nanosleep@GLIBC_2.2.5() - [libc.so.6]" not in labels
    page.goto(fresh_site.url + "/crashes/blacklist")
    entry = page.locator("#blacklist tbody tr").first
    assert "clock_nanosleep@GLIBC_2.2.5()" in entry.inner_text()
    assert "ada" in entry.inner_text() and "sleep wrapper, never the cause" in entry.inner_text()
    page.check("#blacklist input[type=checkbox]")
    page.fill("input[name=why]", "it was the cause after all")
    with page.expect_navigation():
        page.click("text=Let the selected frames be guilty again")
    _wait_for_regroup(fresh_site, after=first)
    page.goto(fresh_site.url + "/crashes/blacklist")
    history = page.locator("#blacklist-history tbody tr").all_inner_texts()
    assert len(history) == 2
    assert "may be guilty again" in history[0] and "it was the cause after all" in history[0]
    assert "marked never guilty" in history[1] and "ada (127.0.0.1)" in history[1]
    page.goto(fresh_site.url + "/crashes")
    assert page.locator("#guilties .guilty-link").first.inner_text() == (
        "clock_nanosleep@GLIBC_2.2.5() - [libc.so.6]"
    )


def _wait_for_regroup(site: LiveServer, after: int = 0, timeout: float = 20.0) -> int:
    """Poll /crashes/regroup.json until a regroup job newer than ``after`` is done."""
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(site.url + "/crashes/regroup.json").json()["regroup"]
        if job is not None and job["id"] > after and job["state"] in ("done", "failed"):
            assert job["state"] == "done", job
            return int(job["id"])
        assert time.monotonic() < deadline, f"regroup job still {job}"
        time.sleep(0.05)


def test_api_docs_render_offline_inside_the_csp(site: LiveServer, page: Any) -> None:
    outside: list[str] = []
    csp: list[str] = []
    page.on("console", lambda m: csp.append(m.text) if "Security Policy" in m.text else None)

    def only_local(route: Any) -> None:
        if route.request.url.startswith(site.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.context.route("**/*", only_local)
    page.goto(site.url + "/docs")
    page.wait_for_selector("#swagger-ui[data-rendered]")
    page.wait_for_selector(".opblock")
    assert page.locator(".opblock-summary-path", has_text="/api/records").count() >= 1
    assert outside == [] and csp == [] and page.errors == []


def test_population_chart_and_table_agree(live: LiveServer, page: Any) -> None:
    # Twelve integer builds with 2..13 machines, and the builds that sort last (blank,
    # 16.04, 31000-custom, rolling) with one machine each: the chart used to show the
    # twelve last in sort order, so most machines were missing from it.
    rows = [
        rec(build=str(31000 + i), machine_id=f"m{i}-{m}")
        for i in range(12)
        for m in range(i + 2)
    ]
    rows += [rec(build=b, machine_id=f"odd-{b}") for b in ("", "16.04", "31000-custom", "rolling")]
    store = Store(Settings(database_url=live.database_url))
    try:
        load(store, rows)
    finally:
        store.close()
    page.goto(live.url + "/population?bucket=week")
    assert _charts_drawn(page) == 1
    stacks = page.evaluate(
        "Chart.getChart(document.getElementById('chart-population')).data.datasets"
        ".map(d => [d.label, d.data])"
    )
    labels = [label for label, _ in stacks]
    assert labels[:10] == [str(31000 + i) for i in range(11, 1, -1)]
    assert labels[10:] == ["other"]
    chart_totals = [sum(column) for column in zip(*(data for _, data in stacks), strict=True)]
    table_totals = page.locator("#population-total th.num").all_inner_texts()
    assert [int(t.replace(",", "")) for t in table_totals] == chart_totals
    assert sum(chart_totals) == sum(range(2, 14)) + 4
    assert "(none)" in page.locator("#population tbody").inner_text()


def test_a_refused_filter_shows_the_message_in_the_page_with_the_form_kept(
    site: LiveServer, page: Any
) -> None:
    answer = page.goto(site.url + "/builds?from=2024-02-01&to=2024-01-01&build=31000")
    assert answer.status == 400
    assert page.inner_text("h1") == "Builds"
    assert page.inner_text("#error") == "from must not be after to"
    assert page.input_value("input[name=build]") == "31000"
    assert page.input_value("input[name=from]") == "2024-02-01"
    page.fill("input[name=to]", "2024-12-31")
    with page.expect_navigation():
        page.click("#filters button[type=submit]")
    assert page.locator("#error").count() == 0
    assert "No records in this period" in page.inner_text("#builds")
    answer = page.goto(site.url + "/crashes/999999")
    assert answer.status == 404 and page.inner_text("#error") == "no crash group with id 999999"
    answer = page.goto(site.url + "/crashes/abc")
    assert answer.status == 400 and "/crashes/abc" in page.inner_text("#error")
    assert page.errors == []


def test_backtraces_keep_the_group_pages_period(fresh_site: LiveServer, page: Any) -> None:
    old = time.time() - 20 * 86400
    day = time.strftime("%Y-%m-%d", time.gmtime(old))
    store = Store(Settings(database_url=fresh_site.database_url))
    try:
        load(store, [rec(classification="org.clearlinux/crash/clr", payload=CRASH,
                         machine_id="old-machine", ts_reception=old, ts_capture=old)])
    finally:
        store.close()
    page.goto(fresh_site.url + f"/crashes?from={day}&to={day}")
    with page.expect_navigation():
        page.locator("#guilties .guilty-link").first.click()
    assert page.locator("#machines tbody tr").count() == 1
    with page.expect_navigation():
        page.click("#all-backtraces")
    assert page.locator(".crash").count() == 1
    assert "old-machine" in page.inner_text(".crash")
    assert page.input_value("input[name=from]") == day
    with page.expect_navigation():
        page.click("text=the group")
    assert page.input_value("input[name=to]") == day
    # Without a period the backtraces page shows the group page's default week: the
    # fleet's two crashes, whose identical backtraces make one card naming both.
    page.goto(fresh_site.url + page.url.split(fresh_site.url, 1)[1].split("?")[0] + "/backtraces")
    assert page.locator(".crash").count() == 1
    assert "2 identical backtraces" in page.inner_text(".crash .stack-count")
    assert "old-machine" not in page.inner_text(".crash")


def test_two_connections_with_one_peer_id_are_two_rows(fresh_site: LiveServer, page: Any) -> None:
    import json

    from websockets.sync.client import connect

    from tests.sources.substrate.client import connected

    ws = fresh_site.url.replace("http://", "ws://", 1) + "/"

    def announce(link: Any) -> None:
        link.send(json.dumps(connected(1, "12D3KooWTwice", name="twice")).encode())
        link.send(json.dumps({"downlink_flush": 1}))
        while json.loads(link.recv(timeout=10)).get("downlink_flushed") != 1:
            pass

    with connect(ws, close_timeout=0.5) as one, connect(ws, close_timeout=0.5) as two:
        announce(one)
        announce(two)
        wait_caught_up(fresh_site.url)  # node connections are kept after the ack
        page.goto(fresh_site.url + "/substrate")
        rows = page.locator("#nodes tbody tr", has_text="12D3KooWTwice")
        assert rows.count() == 2
        assert rows.locator("td:last-child").all_inner_texts() == ["online", "online"]
    # Both closed: the peer is one (offline) row again, its newest connection.
    deadline = time.monotonic() + 10
    while True:
        page.goto(fresh_site.url + "/substrate")
        rows = page.locator("#nodes tbody tr", has_text="12D3KooWTwice")
        status = rows.locator("td:last-child").all_inner_texts()
        if status == ["offline"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert rows.count() == 1 and rows.locator("td:last-child").inner_text() == "offline"


@pytest.fixture(scope="module")
def screenshots() -> Path | None:
    """Where the page screenshots go: $DOWNLINK_SCREENSHOTS; none when it is unset (a
    full-page screenshot of every page at two widths was a third of this test's time,
    thrown away in a temporary directory by every run of the suite)."""
    chosen = os.environ.get("DOWNLINK_SCREENSHOTS")
    if not chosen:
        return None
    path = Path(chosen)
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_every_page_at_desktop_and_phone_width(
    fresh_site: LiveServer, browser: Any, screenshots: Path | None
) -> None:
    gid = httpx.get(fresh_site.url + "/crashes.json").json()["guilties"][0]["guilty_id"]
    rid = httpx.get(fresh_site.url + "/records.json").json()["records"][0]["id"]
    uids, _ = load_ooni(fresh_site)  # the 21 OONI fixture measurements, scored
    with httpx.Client(base_url=fresh_site.url) as fuel:
        ok(post(fuel, "installation_structure", minimal("fuel-master-1")),
           "installation_structure", 201)
    pages = {
        "records": "/records",
        "record": f"/records/{rid}",
        "builds": "/builds",
        "stats": "/stats",
        "crashes": "/crashes",
        "crash-group": f"/crashes/{gid}",
        "backtraces": f"/crashes/{gid}/backtraces",
        "blacklist": "/crashes/blacklist",
        "mce": "/mce",
        "thermal": "/thermal",
        "population": "/population?bucket=week",
        "substrate": "/substrate",
        "plugin-severity": "/plugins/severity",
        "api-docs": "/docs",
        "refused": "/builds?from=2024-02-01&to=2024-01-01",
        "empty": "/builds?from=2001-01-01&to=2001-01-31",
        "consumers": "/consumers",
        "senders": "/senders",
        "search": "/search?q=31000",
        "ooni-measurements": "/ooni/measurements",
        "ooni-measurement": f"/ooni/measurement/{uids['web_connectivity_ir_fp.json']}",
        "ooni-chart": "/ooni/chart?axis_y=probe_cc",
        "fuel": "/fuel",
        "fuel-failures": "/fuel/failures",
        "fuel-refused": "/fuel?from=bad",
    }
    errors: list[str] = []
    for width in (1400, 390):
        context = browser.new_context(viewport={"width": width, "height": 900})
        try:
            pg = context.new_page()
            pg.on("pageerror", lambda e: errors.append(str(e)))
            for name, path in pages.items():
                pg.goto(fresh_site.url + path)
                if pg.locator("canvas").count():
                    _charts_drawn(pg)
                if name == "api-docs":
                    pg.wait_for_selector(".opblock")
                if screenshots is not None:
                    pg.screenshot(path=str(screenshots / f"{name}-{width}.png"),
                                  full_page=True)
                overflow = pg.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                assert overflow <= 0, f"{path} is {overflow} px wider than {width} px"
            assert errors == []
        finally:
            context.close()
    if screenshots is not None:
        print(f"screenshots in {screenshots}")
        assert len(list(screenshots.glob("*.png"))) >= 2 * len(pages)


def test_time_range_presets_are_kept_across_pages(site: LiveServer, page: Any) -> None:
    def day(days_ago: int) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(time.time() - days_ago * 86400))

    page.goto(site.url + "/mce")
    assert page.input_value("input[name=from]") == day(89)  # 90 days, not the whole year
    page.goto(site.url + "/builds?build=31000")
    with page.expect_navigation():
        page.click("#presets a[data-range='7d']")
    assert "range=7d" in page.url and "build=31000" in page.url
    assert page.input_value("input[name=from]") == day(6)
    assert page.inner_text("#presets a.current") == "7 d"
    for label in ("Crashes", "Population", "Stats"):
        with page.expect_navigation():
            page.click(f"nav.top >> text={label}")
        assert page.url.endswith("?range=7d"), page.url
        assert page.input_value("input[name=from]") == day(6)
        assert page.inner_text("#presets a.current") == "7 d"
    with page.expect_navigation():
        page.click("#presets a[data-range='ytd']")
    assert page.input_value("input[name=from]") == day(0)[:4] + "-01-01"
    page.fill("input[name=from]", day(2))
    with page.expect_navigation():
        page.click("#filters button[type=submit]")
    with page.expect_navigation():
        page.click("nav.top >> text=Thermal")
    assert page.input_value("input[name=from]") == day(2)
    assert httpx.get(site.url + "/builds.json?range=2w").status_code == 400
    # The fuel-stats and OONI pages take the presets too, and the bar carries them on.
    page.goto(site.url + "/builds?range=30d")
    for label, path in (("Fuel", "/fuel"), ("OONI", "/ooni/measurements"),
                        ("OONI chart", "/ooni/chart"), ("Stats", "/stats")):
        with page.expect_navigation():
            page.click(f"nav.top >> text='{label}'")
        assert page.url == f"{site.url}{path}?range=30d", page.url
        assert page.inner_text("#presets a.current") == "30 d"
    for path in ("/fuel", "/ooni/measurements", "/ooni/chart"):
        page.goto(site.url + path + "?range=90d")
        with page.expect_navigation():
            page.click("#presets a[data-range='7d']")
        assert page.url.startswith(f"{site.url}{path}?") and "range=7d" in page.url, page.url
        with page.expect_navigation():  # the form keeps the preset
            page.click("form.filters button[type=submit]")
        assert "range=7d" in page.url and page.inner_text("#presets a.current") == "7 d"
    assert page.errors == []


def test_a_chart_bar_leads_to_the_records_it_counts(site: LiveServer, page: Any) -> None:
    page.goto(site.url + "/builds")
    assert _charts_drawn(page) == 1
    label, x, y = page.evaluate(
        "(() => { const c = Chart.getChart(document.getElementById('chart-builds'));"
        " const bar = c.getDatasetMeta(0).data[1];"
        " return [c.data.labels[1], bar.x, (bar.y + bar.base) / 2]; })()"
    )
    with page.expect_navigation():
        page.click("#chart-builds", position={"x": x, "y": y})
    assert f"/records?build={label}&since=" in page.url
    assert set(page.locator("#records td:nth-child(7)").all_inner_texts()) == {label}
    # The records page keeps the dashboard's period in its own fields.
    assert page.input_value("input[name=since]").endswith("T00:00")
    assert page.input_value("input[name=until]").startswith(time.strftime("%Y-%m-%d"))


_WHERE = """([id, ds, i]) => {
  const c = Chart.getChart(document.getElementById(id));
  const d = ds === null ? 0 : c.data.datasets.findIndex(x => x.label === ds);
  const meta = c.getDatasetMeta(d);
  const e = meta.data[i < 0 ? meta.data.length + i : i];
  if (c.config.type === "bar") { return [e.x, (e.y + e.base) / 2]; }
  const p = e.tooltipPosition(); return [p.x, p.y];
}"""
_LEGEND = """([id, text]) => {
  const c = Chart.getChart(document.getElementById(id));
  const i = c.legend.legendItems.findIndex(it => it.text === text);
  const h = c.legend.legendHitBoxes[i];
  return [h.left + h.width / 2, h.top + h.height / 2];
}"""


def _follow(page: Any, chart_id: str, where: list[float]) -> str:
    """Click the chart at ``where`` (canvas pixels) and return the page it leads to."""
    with page.expect_navigation():
        page.click(f"#{chart_id}", position={"x": where[0], "y": where[1]})
    url: str = page.url
    return url


def _chart_leads(page: Any, path: str, chart_id: str, dataset: str | None, index: int) -> str:
    page.goto(page.site + path)
    _charts_drawn(page)
    return _follow(page, chart_id, page.evaluate(_WHERE, [chart_id, dataset, index]))


def _legend_leads(page: Any, path: str, chart_id: str, text: str) -> str:
    page.goto(page.site + path)
    _charts_drawn(page)
    return _follow(page, chart_id, page.evaluate(_LEGEND, [chart_id, text]))


def test_bars_points_slices_and_legend_entries_lead_to_their_records(
    site: LiveServer, page: Any
) -> None:
    """Population segments and legend entries, MCE points, slices and legend entries,
    thermal bars, the /stats per-day line and platform pie: each leads to the records
    it counts, in its bucket (or the page's period), with the page's filters kept."""
    wait_caught_up(site.url)
    page.site = site.url
    today = time.strftime("%Y-%m-%d")
    day = f"since={today}T00%3A00&until={today}T23%3A59%3A59.999"

    url = _chart_leads(page, "/population", "chart-population", "31001", -1)
    assert "/records?build=31001&" + day in url, url
    assert set(page.locator("#records td:nth-child(7)").all_inner_texts()) == {"31001"}
    url = _legend_leads(page, "/population", "chart-population", "31001")
    assert "/records?build=31001&since=" in url and day not in url, url

    mce = "classification=org.clearlinux%2Fmce%2Fcorrected"
    url = _chart_leads(page, "/mce?range=7d", "chart-weekly", "corrected", -1)
    assert f"/records?{mce}&since=" in url and f"until={today}T23" in url, url
    assert page.locator("#records tbody tr").count() == 1
    url = _legend_leads(page, "/mce?range=7d", "chart-weekly", "corrected")
    assert f"/records?{mce}&since=" in url, url
    url = _chart_leads(page, "/mce?range=7d", "chart-class", None, 0)
    assert f"/records?{mce}&since=" in url, url
    url = _legend_leads(page, "/mce?range=7d", "chart-class", "org.clearlinux/mce/corrected")
    assert f"/records?{mce}&since=" in url, url

    url = _chart_leads(page, "/thermal", "chart-thermal", None, -1)
    assert "/records?classification=org.clearlinux%2Fmce%2Fthermal&since=" in url, url
    assert page.locator("#records tbody tr").count() == 1

    url = _chart_leads(page, "/stats?severity=2", "chart-days", None, -1)
    assert "/records?severity=2&" + day in url, url
    assert set(page.locator("#records td:nth-child(5)").all_inner_texts()) == {"2"}
    url = _chart_leads(page, "/stats", "chart-platforms", None, 0)
    assert "/records?platform=Intel+Corporation%7CNUC7i5BNH%7CJ31144-313&since=" in url, url
    url = _legend_leads(page, "/stats", "chart-classes", "org.clearlinux/heartbeat/ping")
    assert "/records?classification=org.clearlinux%2Fheartbeat%2Fping&since=" in url, url
    assert page.errors == []


def _background(browser: Any, url: str, scheme: str) -> tuple[str, str]:
    """The page's background colour and Chart.js's text colour under ``scheme``."""
    context = browser.new_context(color_scheme=scheme)
    try:
        pg = context.new_page()
        pg.goto(url)
        _charts_drawn(pg)
        found: tuple[str, str] = tuple(pg.evaluate(  # type: ignore[assignment]
            "[getComputedStyle(document.body).backgroundColor, Chart.defaults.color]"))
        return found
    finally:
        context.close()


def test_dark_mode_follows_the_system_setting(site: LiveServer, browser: Any) -> None:
    light = _background(browser, site.url + "/builds", "light")
    dark = _background(browser, site.url + "/builds", "dark")
    assert light[0] == "rgb(247, 248, 250)" and dark[0] == "rgb(18, 22, 31)", (light, dark)
    assert dark[1] == "#c8d0e0" and light[1] != dark[1]  # chart text readable on dark


def test_tables_keep_their_headers_one_line_times_and_short_payloads(
    fresh_site: LiveServer, browser: Any
) -> None:
    long_payload = "frame " * 300 + "THE-END"
    store = Store(Settings(database_url=fresh_site.database_url))
    try:
        (stored,) = load(store, [rec(payload=long_payload, machine_id="long-payload")])
    finally:
        store.close()
    context = browser.new_context(viewport={"width": 390, "height": 300})
    try:
        pg = context.new_page()
        pg.goto(fresh_site.url + "/records?machine_id=long-payload")
        cell = pg.locator("#records td.payload")
        # Truncated: 200 characters, drawn on one line with an ellipsis.
        assert cell.inner_text() == long_payload[:200]
        assert pg.evaluate("""(() => { const td = document.querySelector('#records td.payload');
            const s = getComputedStyle(td);
            return [s.textOverflow, s.whiteSpace, td.scrollWidth > td.clientWidth]; })()""") == [
            "ellipsis", "nowrap", True]
        # One-line timestamps, even at phone width.
        assert pg.evaluate("""(() => { const td = document.querySelector('#records td.when');
            const r = document.createRange(); r.selectNodeContents(td);
            return [getComputedStyle(td).whiteSpace, r.getClientRects().length]; })()""") == [
            "nowrap", 1]
        # The full text on the record's page.
        with pg.expect_navigation():
            pg.click("#records tbody tr a[href^='/records/']")
        assert pg.url.endswith(f"/records/{stored['id']}")
        assert pg.inner_text("#payload").strip() == long_payload.strip()
        # Sticky headers (at desktop width: a phone's tables scroll on their own): the
        # header row stays at the top of a scrolled table.
        pg.set_viewport_size({"width": 1400, "height": 300})
        pg.goto(fresh_site.url + "/records")
        assert pg.evaluate("getComputedStyle(document.querySelector('thead th')).position") == (
            "sticky")
        table_top = pg.evaluate("document.querySelector('#records').getBoundingClientRect().top")
        pg.mouse.wheel(0, table_top + 60)
        pg.wait_for_function("window.scrollY > 0")
        th, first_row = pg.evaluate("""(() => [
            document.querySelector('#records thead th').getBoundingClientRect().top,
            document.querySelector('#records tbody tr').getBoundingClientRect().top])()""")
        assert abs(th) < 1 and first_row < 0, (th, first_row)
    finally:
        context.close()


def test_charts_title_their_axes(site: LiveServer, page: Any) -> None:
    for path, chart_id, x, y in (
        ("/builds", "chart-builds", "Build", "Records"),
        ("/stats", "chart-days", "Day (UTC, of reception)", "Records"),
        ("/mce", "chart-weekly", "Week", "Events"),
        ("/population", "chart-population", "Day", "Machines (sum over builds)"),
    ):
        page.goto(site.url + path)
        _charts_drawn(page)
        titles = page.evaluate(
            "id => { const s = Chart.getChart(document.getElementById(id)).options.scales;"
            " return [s.x.title.display, s.x.title.text, s.y.title.display, s.y.title.text]; }",
            chart_id,
        )
        assert titles == [True, x, True, y], (path, titles)
    assert page.errors == []


def test_hidden_crash_groups_behind_the_show_hidden_toggle(
    fresh_site: LiveServer, page: Any
) -> None:
    page.goto(fresh_site.url + "/crashes")
    with page.expect_navigation():
        page.locator("#guilties .guilty-link").nth(1).click()
    page.fill("input[name=comment]", "known kernel warning")
    page.check("input[name=hide]")
    with page.expect_navigation():
        page.click("#guilty-edit button[type=submit]")
    page.goto(fresh_site.url + "/crashes")
    assert page.locator("#guilties tbody tr").count() == 1
    page.check("#show-hidden")
    with page.expect_navigation():
        page.click("#filters button[type=submit]")
    assert "hidden=1" in page.url
    hidden = page.locator("#guilties tr.hidden-group")
    assert hidden.count() == 1 and "(hidden) known kernel warning" in hidden.inner_text()
    assert page.locator("#guilties tbody tr").count() == 2


def test_one_search_box_finds_ids_builds_classes_and_frames(site: LiveServer, page: Any) -> None:
    page.goto(site.url + "/stats")

    def search(text: str) -> list[str]:
        page.fill("nav.top .nav-search input[name=q]", text)
        with page.expect_navigation():
            page.press("nav.top .nav-search input[name=q]", "Enter")
        assert page.inner_text("h1") == "Search"
        return page.locator("#search-results li").all_inner_texts()

    assert search("machine-a") == ["Records of machine machine-a"]
    assert search("31001")[0].startswith("Records of build 31001")
    assert search("org.clearlinux/mce/*")[0].startswith("Records of org.clearlinux/mce/*")
    found = search("nanosleep")
    assert found == ["Crash group 1: clock_nanosleep@GLIBC_2.2.5() - [libc.so.6]"]
    with page.expect_navigation():
        page.click("#search-results a")
    assert page.inner_text("h1") == "Crash group 1"
    assert search("1")[0] == "Record 1"
    event_id = httpx.get(site.url + "/records/1.json").json()["event_id"]
    assert f"Record 1 has event id {event_id}" in search(event_id)
    assert search("no such thing") == []
    assert "Nothing is named" in page.inner_text("#no-results")
    assert page.errors == []


def test_severity_palette_is_the_same_in_tables_and_charts(site: LiveServer, page: Any) -> None:
    page.goto(site.url + "/stats")
    _charts_drawn(page)
    colors = page.evaluate(
        """() => {
        const css = getComputedStyle(document.documentElement);
        const chart = Chart.getChart(document.getElementById('chart-severities'));
        const labels = chart.data.labels;
        const bars = chart.data.datasets[0].backgroundColor;
        const cell = document.querySelector('#severities td.sev-1');
        const probe = document.createElement('span');
        probe.style.color = css.getPropertyValue('--sev-1').trim();
        document.body.appendChild(probe);
        return {labels: labels, bars: bars,
                vars: [1, 2, 3, 4].map(n => css.getPropertyValue('--sev-' + n).trim()),
                cell: getComputedStyle(cell).color, probe: getComputedStyle(probe).color};
    }"""
    )
    by_level = dict(zip(colors["labels"], colors["bars"], strict=True))
    assert by_level["1 low"] == colors["vars"][0]
    assert set(colors["bars"]) <= set(colors["vars"])
    assert colors["cell"] == colors["probe"]  # the table cell takes the same colour
    page.goto(site.url + "/plugins/severity")
    _charts_drawn(page)
    stacks = page.evaluate(
        "Chart.getChart(document.getElementById('chart-severity')).data.datasets"
        ".map(d => [d.label, d.backgroundColor])"
    )
    assert dict(stacks)["severity 1"] == colors["vars"][0]
    # Machine checks take the same scale (corrected 1 ... action required 4; thermal 2).
    page.goto(site.url + "/mce")
    _charts_drawn(page)
    mce = page.evaluate(
        """() => ({
        weekly: Chart.getChart(document.getElementById('chart-weekly')).data.datasets
          .map(d => [d.label, d.borderColor]),
        pie: (c => c.data.labels.map((l, i) => [l, c.data.datasets[0].backgroundColor[i]]))(
          Chart.getChart(document.getElementById('chart-class')))})"""
    )
    assert dict(mce["weekly"])["corrected"] == colors["vars"][0]
    assert dict(mce["pie"])["org.clearlinux/mce/corrected"] == colors["vars"][0]
    page.goto(site.url + "/thermal")
    _charts_drawn(page)
    thermal = page.evaluate(
        "Chart.getChart(document.getElementById('chart-thermal')).data.datasets[0].backgroundColor"
    )
    assert thermal == colors["vars"][1]
    assert page.errors == []


def test_crash_triage_draws_without_script_errors(site: LiveServer, page: Any) -> None:
    page.goto(site.url + "/crashes")
    _charts_drawn(page)
    assert page.locator("#guilties svg.spark polyline").count() >= 1
    assert page.locator("#guilties svg.share-bar rect").count() >= 1
    page.locator("#guilties .guilty-link").first.click()
    page.wait_for_load_state()
    assert _charts_drawn(page) == 2
    labels = page.evaluate("Chart.getChart(document.getElementById('chart-daily')).data.labels")
    assert labels[-1].endswith(" (so far)")
    assert page.locator("#processes").inner_text().startswith("in ")
    assert page.errors == []


def test_partial_weeks_are_marked_on_mce_and_thermal(site: LiveServer, page: Any) -> None:
    views = (("/mce?range=30d", "chart-weekly"), ("/thermal?range=30d", "chart-thermal"))
    for path, chart_id in views:
        page.goto(site.url + path)
        _charts_drawn(page)
        labels = page.evaluate(f"Chart.getChart(document.getElementById('{chart_id}')).data.labels")
        assert labels[-1].endswith(" (so far)"), labels
        # 30 days from today start on a Monday one day in seven: the first week is cut.
        starts = page.evaluate("document.querySelector('input[name=from]').value")
        monday = time.strptime(starts, "%Y-%m-%d").tm_wday == 0
        assert labels[0].endswith(" (partial)") is not monday, labels
        assert not any("(so far)" in x or "(partial)" in x for x in labels[1:-1])
    assert page.errors == []
