"""CSV twins over real HTTP: the page's table, as a download, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io

import httpx

from downlink.settings import Settings
from downlink.store.database import Store
from downlink.testing.live import LiveServer
from tests.web.helpers import MCE, load, rec, sample_fleet


def _csv(live: LiveServer, path: str) -> list[list[str]]:
    r = httpx.get(live.url + path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"].startswith("attachment; filename=")
    return list(csv.reader(io.StringIO(r.text)))


def test_csv_twins_hold_the_tables(live: LiveServer) -> None:
    store = Store(Settings(database_url=live.database_url))
    try:
        load(store, sample_fleet("<b>x</b>", second_build="9"))
        load(store, [rec(build="", machine_id="=HYPERLINK(\"http://evil\")",
                         classification="org.clearlinux/mce/corrected", payload=MCE)])
    finally:
        store.close()
    builds = _csv(live, "/builds.csv")
    assert builds[0] == ["build", "records"]
    assert builds[1:] == [[b["build"], str(b["records"])]
                          for b in httpx.get(live.url + "/builds.json").json()["builds"]]
    crashes = _csv(live, "/crashes.csv")
    assert crashes[0][:4] == ["guilty_id", "function", "module", "crashes"]
    assert [row[1] for row in crashes[1:]] == ["clock_nanosleep@GLIBC_2.2.5()", "dump_stack"]
    population = _csv(live, "/population.csv?bucket=week")
    assert population[0][0] == "build" and len(population[0]) == len(population[1])
    assert "(none)" in [row[0] for row in population[1:]]
    records = _csv(live, "/records.csv?classification=org.clearlinux/mce/*")
    assert records[0][:4] == ["id", "ts_reception", "source", "machine_id"]
    # A formula in a record stays text in a spreadsheet.
    assert records[1][3] == "'=HYPERLINK(\"http://evil\")"
    machines = _csv(live, "/mce.csv")
    assert machines[0] == ["machine_id", "events", "builds"] and len(machines) == 3
    assert sum(int(n) for _, n in _csv(live, "/thermal.csv")[1:]) == 1
    assert httpx.get(live.url + "/builds.csv?from=x").status_code == 400
    page = httpx.get(live.url + "/crashes?build=9").text
    assert 'class="csv" href="/crashes.csv?build=9"' in page
