"""OONI pages: over HTTP (both databases) and in headless Chromium."""

from __future__ import annotations

import csv
import html
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from downlink.testing.live import LiveServer
from tests.sources.ooni.test_api_http import load

CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.postgres
def test_pages_and_twins(ooni: LiveServer) -> None:
    uids, msms = load(ooni)
    http = httpx.Client(base_url=ooni.url)

    page = http.get("/ooni/measurements")
    assert page.status_code == 200
    assert page.text.count('href="/ooni/measurement/') == 21
    twin = http.get("/ooni/measurements.json").json()
    assert len(twin["results"]) == 21 and twin["next_cursor"] is None
    only_ir = http.get("/ooni/measurements.json", params={"probe_cc": "IR", "failure": "false"})
    assert [m["measurement_uid"] for m in only_ir.json()["results"]] == [
        uids["web_connectivity_ir_fp.json"]]
    paged = http.get("/ooni/measurements", params={"limit": "20"})
    assert 'id="older"' in paged.text
    bad = http.get("/ooni/measurements", params={"probe_asn": "nope"})
    assert bad.status_code == 400 and "probe_asn" in bad.text
    # The CSV twin, linked from the page: one row per measurement, filters as the JSON's.
    assert 'class="csv" href="/ooni/measurements.csv?probe_cc=IR"' in http.get(
        "/ooni/measurements", params={"probe_cc": "IR"}).text
    rows = list(csv.reader(io.StringIO(http.get("/ooni/measurements.csv").text)))
    assert rows[0][:3] == ["measurement_uid", "report_id", "measurement_start_time"]
    assert len(rows) == 22
    ir = http.get("/ooni/measurements.csv", params={"probe_cc": "IR", "failure": "false"})
    assert ir.headers["content-type"] == "text/csv; charset=utf-8"
    assert [r[0] for r in csv.reader(io.StringIO(ir.text))][1:] == [
        uids["web_connectivity_ir_fp.json"]]
    bad_csv = http.get("/ooni/measurements.csv", params={"probe_asn": "nope"})
    assert bad_csv.status_code == 400 and "probe_asn" in bad_csv.json()["message"]

    uid = uids["web_connectivity_ir_fp.json"]
    one = http.get(f"/ooni/measurement/{uid}")
    assert one.status_code == 200
    assert "ooni.ir_10dot10_ipv4_1" in one.text and "confirmed" in one.text
    assert "10.10.34.36" in one.text  # the raw JSON
    data = http.get(f"/ooni/measurement/{uid}.json").json()
    assert data["confirmed"] is True and data["blocking_type"] == "dns"
    assert data["raw"]["content"] == msms["web_connectivity_ir_fp.json"]
    assert http.get("/ooni/measurement/nope").status_code == 404
    # The navigation bar's search box finds a measurement by its uid, a report by its id.
    found = http.get("/search.json", params={"q": uid}).json()["found"]
    assert found["ooni_measurement"] == {"measurement_uid": uid, "test_name": "web_connectivity",
                                         "probe_cc": "IR"}
    assert found["ooni_report"] is None
    report_id = data["report_id"]
    found = http.get("/search.json", params={"q": report_id}).json()["found"]
    assert found["ooni_report"]["report_id"] == report_id
    assert found["ooni_report"]["measurements"] >= 1 and found["ooni_measurement"] is None
    box = http.get("/search", params={"q": report_id}).text
    assert f'href="/ooni/measurements?report_id={report_id}"' in box
    box = http.get("/search", params={"q": uid}).text
    assert f'<a href="/ooni/measurement/{uid}">OONI measurement {uid}</a>' in box
    assert http.get("/search.json", params={"q": uid[:-1]}).json()["found"][
        "ooni_measurement"] is None
    assert http.get("/ooni/measurement/nope.json").status_code == 404

    chart = http.get("/ooni/chart", params={"axis_y": "probe_cc", "time_grain": "auto"})
    assert chart.status_code == 200
    charts = orjson.loads(chart.text.split('id="page-charts">')[1].split("</script>")[0])
    assert all(c["stacked"] for c in charts)
    assert [d["label"] for d in charts[0]["datasets"]] == ["ok", "anomaly", "confirmed",
                                                          "failure"]
    assert sum(sum(d["data"]) for c in charts for d in c["datasets"]) == 21
    twin_chart = http.get("/ooni/chart.json", params={"axis_x": "test_name"}).json()
    assert sum(r["measurement_count"] for r in twin_chart["rows"]) == 21
    [csv_href] = re.findall(r'<a href="([^"]+)" id="ooni-csv">', chart.text)
    csv_text = http.get(html.unescape(csv_href)).text
    assert csv_text.startswith("measurement_start_day,probe_cc,anomaly_count")
    # Time-range presets (on measurement_start_time, like since/until); dates win.
    assert len(http.get("/ooni/measurements.json", params={"range": "7d"}).json()[
        "results"]) == 21
    assert http.get("/ooni/measurements.json", params={
        "range": "7d", "until": "2001-01-01"}).json()["results"] == []
    ytd = http.get("/ooni/chart", params={"range": "ytd", "axis_y": "probe_cc"}).text
    since = time.strftime("%Y-01-01")
    assert f"since={since}&amp;until=" in ytd and 'data-range="ytd" class="current"' in ytd
    assert 'href="/fuel?range=ytd"' in ytd
    bad_range = http.get("/ooni/measurements", params={"range": "2w", "probe_cc": "IT"})
    assert bad_range.status_code == 400 and "range must be one of" in bad_range.text
    assert 'value="IT"' in bad_range.text
    bad_chart = http.get("/ooni/chart", params={"axis_x": "nope"})
    assert bad_chart.status_code == 400 and "nope" in bad_chart.text


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM),
                              args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.mark.browser
@pytest.mark.postgres
def test_search_measurement_and_chart_in_the_browser(ooni: LiveServer, browser: Any,
                                                    tmp_path: Path) -> None:
    uids, _msms = load(ooni)
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(ooni.url + "/records")
        with page.expect_navigation():
            page.click("nav.top >> text='OONI'")
        assert page.inner_text("h1") == "OONI measurements"
        assert page.locator("#ooni-measurements tbody tr").count() == 21
        page.fill("input[name=probe_cc]", "IR")
        page.select_option("select[name=anomaly]", "true")
        with page.expect_navigation():
            page.click("#ooni-search button[type=submit]")
        rows = page.locator("#ooni-measurements tbody tr")
        assert rows.count() == 1
        assert rows.locator("td.outcome").inner_text() == "confirmed"
        with page.expect_navigation():
            rows.locator("a").click()
        assert uids["web_connectivity_ir_fp.json"] in page.inner_text("h1")
        assert "ooni.ir_10dot10_ipv4_1" in page.inner_text("#ooni-fingerprints")
        assert '"probe_cc": "IR"' in page.inner_text("#ooni-raw")

        with page.expect_navigation():
            page.click("nav.top >> text='OONI chart'")
        page.select_option("select[name=axis_x]", "test_name")
        with page.expect_navigation():
            page.click("#ooni-chart-form button[type=submit]")
        page.wait_for_function(
            "document.querySelectorAll('canvas').length > 0 && "
            "document.querySelectorAll('canvas').length === "
            "document.querySelectorAll('canvas[data-rendered]').length"
        )
        drawn = page.evaluate(
            "Array.from(document.querySelectorAll('canvas')).filter("
            "c => Chart.getChart(c) !== undefined).length")
        assert drawn == 1
        assert page.locator("#ooni-counts tbody tr").count() == 12  # test names
        with page.expect_download() as info:
            page.click("#ooni-csv")
        saved = tmp_path / "counts.csv"
        info.value.save_as(saved)
        lines = saved.read_text().splitlines()
        assert lines[0].startswith("test_name,anomaly_count")
        assert len(lines) == 13
        assert errors == []
    finally:
        context.close()
