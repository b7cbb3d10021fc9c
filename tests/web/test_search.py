"""The search box over real HTTP, on both databases: a record found by its event id."""

from __future__ import annotations

import csv
import io
import secrets
from html import unescape

import httpx

from downlink.testing.live import LiveServer
from tests.wire import v2_headers


def test_an_event_id_finds_its_records(live: LiveServer) -> None:
    event_id = secrets.token_hex(16)
    with httpx.Client(base_url=live.url, timeout=30) as client:
        sent = []
        # Two records of one event id (a client that reuses it), one of another.
        for eid, machine in ((event_id, "m1"), (secrets.token_hex(16), "m2"), (event_id, "m3")):
            r = client.post(
                "/v2/collector",
                headers=v2_headers({"event_id": eid, "machine_id": machine * 16}),
                content=b"payload",
            )
            assert r.status_code == 201, r.text
            sent.append(r.json()["id"])
        found = client.get("/search.json", params={"q": event_id}).json()["found"]
        assert found["event_records"] == [sent[2], sent[0]]  # newest first
        assert found["record_id"] is None and found["machine_id"] is None
        page = client.get("/search", params={"q": event_id})
        assert page.status_code == 200
        links = [unescape(x) for x in page.text.split('<li class="event"><a href="')[1:]]
        assert [link.split('"', 1)[0] for link in links] == [
            f"/records/{sent[2]}",
            f"/records/{sent[0]}",
        ]
        assert f"has event id <code>{event_id}</code>" in page.text
        # The CSV twin, linked from the page: one row per thing found.
        assert f'class="csv" href="/search.csv?q={event_id}"' in page.text
        table = client.get("/search.csv", params={"q": event_id})
        assert table.headers["content-type"] == "text/csv; charset=utf-8"
        assert list(csv.reader(io.StringIO(table.text))) == [
            ["found", "value", "details"],
            ["event_records", str(sent[2]), ""],
            ["event_records", str(sent[0]), ""],
        ]
        machine = client.get("/search.csv", params={"q": "m1" * 16}).text
        assert list(csv.reader(io.StringIO(machine)))[1:] == [["machine_id", "m1" * 16, ""]]
        # A record's page shows its event id, so the search answers what it shows.
        record = client.get(f"/records/{sent[0]}.json").json()
        assert record["event_id"] == event_id
        # Part of an event id, or one no record has: nothing.
        for text in (event_id[:16], "0" * 32):
            assert client.get("/search.json", params={"q": text}).json()["found"][
                "event_records"
            ] == []
        nothing = client.get("/search", params={"q": "0" * 32}).text
        assert 'id="no-results"' in nothing
