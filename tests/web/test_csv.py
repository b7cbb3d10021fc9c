"""CSV twins over real HTTP: the page's table, as a download, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
import json

import httpx
from websockets.sync.client import connect

from downlink.settings import Settings
from downlink.store.database import Store
from downlink.testing.consumers import wait_caught_up
from downlink.testing.live import LiveServer
from downlink.web.rendering import when
from tests.sources.substrate.client import connected
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
    assert crashes[0][-2:] == ["process", "package"]
    assert crashes[1][-2:] == ["/usr/bin/sleep", "libc.so.6"] and crashes[2][-1] == "kernel"
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


def test_csv_twins_of_the_crash_group_pages_the_never_guilty_history_nodes_and_senders(
    live: LiveServer,
) -> None:
    store = Store(Settings(database_url=live.database_url))
    try:
        load(store, sample_fleet("x", second_build="9"))
    finally:
        store.close()
    group = httpx.get(live.url + "/crashes.json").json()["guilties"][0]
    gid = group["guilty_id"]

    # The group's machines table, a page at a time as the page shows it.
    twin = httpx.get(f"{live.url}/crashes/{gid}.json?limit=1").json()
    machines = _csv(live, f"/crashes/{gid}.csv?limit=1")
    assert machines[0] == ["build", "machine_id", "crashes"]
    assert machines[1:] == [[m["build"], m["machine_id"], str(m["records"])]
                            for m in twin["machines"]] and len(machines) == 2
    assert len(_csv(live, f"/crashes/{gid}.csv")) == 3  # both machines
    r = httpx.get(f"{live.url}/crashes/{gid}.csv")
    assert r.headers["content-disposition"] == f'attachment; filename="crash-group-{gid}.csv"'
    page = httpx.get(f"{live.url}/crashes/{gid}?limit=1").text
    assert f'class="csv" href="/crashes/{gid}.csv?limit=1"' in page

    # The backtraces: one row per crash, the frames from the top, newest first.
    crashes = httpx.get(f"{live.url}/crashes/{gid}/backtraces.json").json()["crashes"]
    rows = _csv(live, f"/crashes/{gid}/backtraces.csv")
    assert rows[0][:4] == ["record_id", "ts_reception", "machine_id", "build"]
    assert [int(row[0]) for row in rows[1:]] == [c["record_id"] for c in crashes]
    assert len(rows) == 3 and {row[3] for row in rows[1:]} == {"31000", "31001"}
    assert rows[1][-1].startswith("clock_nanosleep@GLIBC_2.2.5() (libc.so.6) | __nanosleep()")
    assert [row[7] for row in rows[1:]] == ["11", "11"]  # the signal
    one = _csv(live, f"/crashes/{gid}/backtraces.csv?build=31001")
    assert [row[3] for row in one[1:]] == ["31001"]
    page = httpx.get(f"{live.url}/crashes/{gid}/backtraces?build=31001").text
    assert f'class="csv" href="/crashes/{gid}/backtraces.csv?build=31001"' in page

    # Refusals keep the twins' JSON answers: a malformed id (checked before the view
    # runs), an unknown one, a bad parameter.
    for path, status, message in (
        ("/crashes/abc.csv", 400, "guilty_id"),
        ("/crashes/0/backtraces.csv", 400, "guilty_id"),
        ("/crashes/999999.csv", 404, "no crash group with id 999999"),
        ("/crashes/999999/backtraces.csv", 404, "no crash group with id 999999"),
        (f"/crashes/{gid}.csv?limit=0", 400, "limit must be"),
        ("/records/abc.json", 400, "record_id"),
    ):
        r = httpx.get(live.url + path)
        assert r.status_code == status and message in r.json()["message"], (path, r.text)

    # The never-guilty list's history: who changed which frame, when and why.
    r = httpx.post(
        live.url + "/crashes/blacklist",
        data={"frame": '["clock_nanosleep@GLIBC_2.2.5()", "libc.so.6"]', "who": "ana",
              "why": "=sleeps, never the cause"},
        headers={"accept": "application/json"},
    )
    assert r.status_code == 202, r.text
    history = _csv(live, "/crashes/blacklist.csv")
    assert history[0] == ["ts", "action", "function", "module", "who", "why", "address"]
    assert history[1][1:6] == ["add", "clock_nanosleep@GLIBC_2.2.5()", "libc.so.6", "ana",
                               "'=sleeps, never the cause"]
    logged = httpx.get(live.url + "/crashes/blacklist.json").json()["history"][0]
    assert (history[1][0], history[1][6]) == (when(logged["ts"]), "127.0.0.1")
    assert 'id="history-csv"' in httpx.get(live.url + "/crashes/blacklist").text

    # Substrate's nodes, as the page lists them.
    with connect(live.url.replace("http://", "ws://", 1) + "/", max_size=None) as ws:
        ws.send(json.dumps(connected(1, "12D3KooWCsv", name="=alice")).encode())
        ws.send(json.dumps({"downlink_flush": 1}))
        while json.loads(ws.recv()).get("downlink_flushed") != 1:
            pass
        # The flush answers once the record is committed; the node's row is kept after
        # that by the substrate_connections consumer.
        wait_caught_up(live.url)
        nodes = _csv(live, "/substrate.csv")
    assert nodes[0][:5] == ["peer_id", "name", "chain", "version", "ip_addr"]
    assert [(row[0], row[1], row[5], row[-1]) for row in nodes[1:]] == [
        ("12D3KooWCsv", "'=alice", "/", "online")
    ]
    assert 'class="csv" href="/substrate.csv?minutes=5"' in httpx.get(
        live.url + "/substrate?minutes=5").text
    assert httpx.get(live.url + "/substrate.csv?minutes=0").status_code == 400

    # Senders: none mismatched here, so a header only; every bound one with all=1.
    senders = _csv(live, "/senders.csv")
    assert senders[0][:3] == ["source", "sender_id", "network"] and senders[1:] == []
    assert httpx.get(live.url + "/senders.csv?source=nope").status_code == 400
