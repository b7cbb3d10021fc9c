"""One View declaration, three answers: the page, its JSON twin and its CSV twin, over HTTP."""

from __future__ import annotations

import csv
import io

import httpx

from downlink.settings import Settings
from downlink.store.database import Store
from downlink.testing.consumers import wait_caught_up
from downlink.testing.live import LiveServer
from tests.web.helpers import load, rec


def _csv(live: LiveServer, path: str) -> list[list[str]]:
    r = httpx.get(live.url + path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(r.text)))


def test_views_answer_page_json_and_csv_from_one_declaration(live: LiveServer) -> None:
    store = Store(Settings(database_url=live.database_url))
    try:
        load(store, [rec(severity=2), rec(severity=2), rec(severity=4)])
    finally:
        store.close()
    wait_caught_up(live.url)

    # A plug-in view: its table as CSV (new), matching its JSON twin row for row.
    twin = httpx.get(live.url + "/plugins/severity.json").json()
    table = _csv(live, "/plugins/severity.csv")
    assert table[0] == twin["table"]["columns"]
    assert table[1:] == [[str(v) for v in row] for row in twin["table"]["rows"]]
    assert sum(int(n) for row in table[1:] for n in row[1:]) == 3
    r = httpx.get(live.url + "/plugins/severity.csv")
    assert r.headers["content-disposition"] == 'attachment; filename="plugin-severity.csv"'
    # Refusals keep the twins' JSON message and status.
    r = httpx.get(live.url + "/plugins/nope.csv")
    assert r.status_code == 404 and "no plug-in view named 'nope'" in r.json()["message"]
    r = httpx.get(live.url + "/plugins/severity.csv?from=2024-13-01")
    assert r.status_code == 400 and "from must be a date" in r.json()["message"]

    # A core page: the consumers' table as CSV (new), the same rows as its JSON twin.
    consumers = httpx.get(live.url + "/consumers.json").json()["consumers"]
    rows = _csv(live, "/consumers.csv")
    assert rows[0][:3] == ["name", "source", "follows"]
    assert [r[0] for r in rows[1:]] == [c["name"] for c in consumers]
    page = httpx.get(live.url + "/consumers", headers={"accept": "text/html"})
    assert page.status_code == 200 and 'class="csv" href="/consumers.csv"' in page.text

    # A source's page: Clear Linux's breakdowns as one CSV table (new).
    stats = httpx.get(live.url + "/stats.json").json()
    breakdown = _csv(live, "/stats.csv")
    assert breakdown[0] == ["dimension", "value", "records"]
    severities = [(int(v), int(n)) for d, v, n in breakdown[1:] if d == "severity"]
    assert severities == [(s["severity"], s["records"]) for s in stats["severities"]]
    assert sorted(severities) == [(2, 2), (4, 1)]
    assert 'href="/stats.csv?' in httpx.get(live.url + "/stats").text
    assert httpx.get(live.url + "/stats.csv?from=x").status_code == 400

    # Search results have a CSV twin beside the JSON one.
    found = httpx.get(live.url + "/search.csv?q=1")  # the search box has a CSV twin too
    assert found.status_code == 200 and found.headers["content-type"].startswith("text/csv")
    assert httpx.get(live.url + "/search.json?q=1").json()["found"]["record_id"] == 1
