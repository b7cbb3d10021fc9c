"""Every page renders, its JSON twin gives the same numbers, bad input is a 4xx JSON."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, update

from downlink.app import create_app
from downlink.errors import BadRequest
from downlink.pipeline.jobrunner import JobRunner
from downlink.settings import Settings
from downlink.sources.clearlinux.crashes import add_to_blacklist
from downlink.store.database import Store
from downlink.store.jobs import claim, enqueue, fail
from downlink.store.tables import jobs
from tests.web.helpers import CRASH, load, rec, sample_fleet

PAGES = (
    "/records",
    "/builds",
    "/stats",
    "/crashes",
    "/mce",
    "/thermal",
    "/population",
    "/crashes/blacklist",
    "/plugins/severity",
    "/substrate",
    "/search",
)
SCRIPT = '<script>window.pwned = 1; alert("x")</script><img src=x onerror="window.pwned=2">'


def _store(client: TestClient) -> Store:
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    return store


@pytest.fixture
def filled(client: TestClient) -> TestClient:
    store = _store(client)
    load(store, sample_fleet(SCRIPT, second_build="9"))
    return client


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_with_navigation_and_csp(filled: TestClient, path: str) -> None:
    r = filled.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    for tab in (
        "/records",
        "/builds",
        "/stats",
        "/crashes",
        "/mce",
        "/thermal",
        "/population",
        "/plugins/severity",
        "/substrate",
    ):
        assert f'href="{tab}"' in r.text
    twin = filled.get(path.replace("/crashes/blacklist", "/crashes/blacklist") + ".json")
    assert twin.status_code == 200 and twin.headers["content-type"] == "application/json"


def test_builds_twin_matches_page(filled: TestClient) -> None:
    data = filled.get("/builds.json").json()
    assert [b["build"] for b in data["builds"]] == ["9", "31000", "31001", "16.04"]
    assert data["total"] == 9
    html = filled.get("/builds").text
    for b in data["builds"]:
        assert f'>{b["build"]}</a></td><td class="num">{b["records"]}<' in html
    charts = json.loads(re.search(r'id="page-charts">(.*?)</script>', html, re.S).group(1))
    assert charts[0]["labels"] == ["9", "31000", "31001", "16.04"]


def test_builds_rows_lead_to_their_crashes(filled: TestClient) -> None:
    page = filled.get("/builds?range=7d").text
    links = dict(re.findall(r'<tr><td><a href="[^"]*">([^<]+)</a>.*?'
                            r'<a class="build-crashes" href="([^"]+)">crashes</a>', page))
    assert set(links) == {"31000", "9", "16.04", "31001"}, page
    period = filled.get("/builds.json?range=7d").json()["period"]
    href = links["31001"].replace("&amp;", "&")
    assert href == f"/crashes?build=31001&from={period['from']}&to={period['to']}"
    crashes = filled.get(href.replace("/crashes?", "/crashes.json?")).json()
    assert len(crashes["guilties"]) == 1  # the crash group, counted on build 31001 alone
    assert crashes["build"] == "31001"
    none = filled.get(links["16.04"].replace("&amp;", "&").replace("/crashes?", "/crashes.json?"))
    assert none.json()["guilties"] == []


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_the_favicon_is_served(client: TestClient) -> None:
    page = client.get("/records").text
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
    for path in ("/static/favicon.svg", "/favicon.ico"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
        assert r.text.lstrip().startswith("<svg")


def test_the_stats_pies_group_their_long_tail_into_other(client: TestClient) -> None:
    store = _store(client)
    # 15 classifications: 12 slices, then "other" holding the three smallest.
    load(store, [rec(classification=f"org.clearlinux/test/c{n:02d}")
                 for n in range(15) for _ in range(20 - n)])
    html = client.get("/stats").text
    charts = json.loads(html.split('id="page-charts">', 1)[1].split("</script>", 1)[0])
    classes = next(c for c in charts if c["id"] == "chart-classes")
    assert len(classes["labels"]) == 13 and classes["labels"][-1] == "other"
    assert classes["labels"][:12] == [f"org.clearlinux/test/c{n:02d}" for n in range(12)]
    assert classes["datasets"][0]["data"] == [20 - n for n in range(12)] + [8 + 7 + 6]
    assert classes["links"][-1] == ""  # "other" leads nowhere
    platforms = next(c for c in charts if c["id"] == "chart-platforms")
    assert "other" not in platforms["labels"]


def test_stats_filters(filled: TestClient) -> None:
    data = filled.get("/stats.json", params={"severity": "3"}).json()
    assert data["classifications"] == [{"classification": "org.clearlinux/crash/clr", "records": 2}]
    data = filled.get("/stats.json", params={"classification": "org.clearlinux/mce/*"}).json()
    assert sum(c["records"] for c in data["classifications"]) == 2


def test_records_search_and_paging(filled: TestClient) -> None:
    load(_store(filled), [rec(machine_id="pager") for _ in range(60)])
    first = filled.get("/records.json", params={"machine_id": "pager"}).json()
    assert len(first["records"]) == 50 and first["next_cursor"]
    rest = filled.get(
        "/records.json", params={"machine_id": "pager", "before": first["next_cursor"]}
    ).json()
    assert len(rest["records"]) == 10 and rest["next_cursor"] is None
    assert (
        filled.get("/records.json", params={"q": "nanosleep"}).json()["records"][0][
            "classification"
        ]
        == "org.clearlinux/crash/clr"
    )
    assert (
        len(
            filled.get("/records.json", params={"q": "nanosleep", "build": "31001"}).json()[
                "records"
            ]
        )
        == 1
    )
    assert len(filled.get("/records.json", params={"platform": "nope"}).json()["records"]) == 0
    html = filled.get("/records", params={"machine_id": "pager"}).text
    assert 'id="older"' in html


def test_script_payload_is_escaped(filled: TestClient) -> None:
    rid = filled.get(
        "/records.json", params={"classification": "org.clearlinux/journal/error"}
    ).json()["records"][0]["id"]
    for html in (filled.get(f"/records/{rid}").text, filled.get("/records").text):
        assert "<script>window.pwned" not in html
        assert 'onerror="window' not in html
    assert "&lt;script&gt;window.pwned = 1" in filled.get(f"/records/{rid}").text
    assert filled.get(f"/records/{rid}.json").json()["payload"] == SCRIPT


@pytest.mark.parametrize(
    "path",
    [
        "/builds.json?from=yesterday",
        "/stats.json?severity=9",
        "/records.json?before=x",
        "/records.json?since=notatime",
        "/population.json?bucket=year",
        "/crashes.json?limit=0",
        "/builds.json?from=2024-02-01&to=2024-01-01",
        "/records/999999.json",
        "/crashes/999999.json",
        "/crashes/999999/backtraces.json",
        "/plugins/nope.json",
        "/crashes/abc",
        "/population.json?from=2000-01-01&to=2024-01-01",
    ],
)
@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_bad_input_is_a_json_4xx(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert 400 <= r.status_code < 500
    assert "message" in r.json()


@pytest.mark.parametrize(
    "path, status, message, kept",
    [
        ("/builds?from=yesterday&build=31000", 400, "from must be a date", 'value="31000"'),
        ("/stats?severity=9&platform=x", 400, "severity must be", 'value="x"'),
        ("/records?before=x&machine_id=m1", 400, "before must be", 'value="m1"'),
        ("/population?bucket=year&build=7", 400, "bucket must be", 'value="7"'),
        ("/crashes?limit=0&build=31000", 400, "limit must be", 'value="0"'),
        ("/mce?from=2024-02-01&to=2024-01-01", 400, "from must not be", 'value="2024-02-01"'),
        ("/thermal?to=someday", 400, "to must be a date", 'value="someday"'),
        ("/substrate?minutes=0", 400, "minutes must be", 'value="0"'),
        ("/plugins/severity?from=x", 400, "from must be a date", 'value="x"'),
        ("/records/999999", 404, "no record with id 999999", "Record 999999"),
        ("/crashes/999999", 404, "no crash group with id 999999", "Crash group 999999"),
        ("/crashes/999999/backtraces", 404, "no crash group with id 999999", "Backtraces of"),
        ("/plugins/nope", 404, "no plug-in view named", "nope"),
        ("/fuel?from=bad&release=9.0", 400, "from must be a date", 'value="9.0"'),
        ("/fuel?from=2024-02-01&to=2024-01-01", 400, "from is after to", 'value="2024-02-01"'),
        ("/ooni/measurements?since=bad&probe_cc=IT", 400, "since", 'value="IT"'),
        ("/ooni/measurements?probe_asn=ASx&domain=x.org", 400, "probe_asn", 'value="x.org"'),
        ("/ooni/chart?axis_x=nope&probe_cc=IT", 400, "Invalid axis name", 'value="IT"'),
        ("/ooni/chart?time_grain=zz&domain=x.org", 400, "time_grain", 'value="x.org"'),
        ("/ooni/measurement/nope", 404, "No measurement nope", "Measurement not found"),
    ],
)
@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_a_page_shows_its_refusal_inside_the_page(
    client: TestClient, path: str, status: int, message: str, kept: str
) -> None:
    r = client.get(path)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("text/html")
    error = re.search(r'<p class="error" id="error" role="alert">(.*?)</p>', r.text)
    assert error is not None and message in error.group(1), r.text
    assert kept in r.text
    assert 'href="/records"' in r.text and "page-charts" not in r.text


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_a_refusal_any_page_lets_out_is_a_page_for_browsers(settings: Settings) -> None:
    """The net under pages that are not Views: a BadRequest becomes an error page for a
    browser, and stays ``{"message": …}`` for everyone else and on JSON paths."""
    app = create_app(settings)

    @app.get("/refusing-page")
    async def _refusing() -> None:
        raise BadRequest("when must be a date", status=422)

    html = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    with TestClient(app, raise_server_exceptions=False) as c:
        page = c.get("/refusing-page?when=x", headers=html)
        assert page.status_code == 422 and page.headers["content-type"].startswith("text/html")
        assert re.search(r'id="error" role="alert">/refusing-page: when must be a date<', page.text)
        assert c.get("/refusing-page").json() == {"message": "when must be a date"}
        fuel = c.get("/fuel.json?from=bad", headers=html)
        assert fuel.status_code == 400 and "from must be" in fuel.json()["message"]
        assert c.get("/fuel.csv?from=bad", headers=html).json()["message"]


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_browsers_get_a_page_for_unknown_paths_and_malformed_ids(client: TestClient) -> None:
    html = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    for path, status in (("/no/such/page", 404), ("/crashes/abc", 400)):
        r = client.get(path, headers=html)
        assert r.status_code == status and r.headers["content-type"].startswith("text/html")
        assert 'id="error"' in r.text and path in r.text
    assert client.get("/api/records?severity=9", headers=html).json()["message"]
    assert client.get("/no/such/page").json() == {"message": "Not Found"}


def test_crash_group_pages_its_machines(client: TestClient) -> None:
    store = _store(client)
    crash = "org.clearlinux/crash/clr"
    spread = [("m1", "31000")] * 3 + [("m2", "31000")] * 2 + [("m3", "31001")]
    load(
        store,
        [rec(classification=crash, payload=CRASH, machine_id=m, build=b) for m, b in spread],
    )
    gid = client.get("/crashes.json").json()["guilties"][0]["guilty_id"]
    first = client.get(f"/crashes/{gid}.json?limit=2").json()
    assert [(m["machine_id"], m["records"]) for m in first["machines"]] == [("m1", 3), ("m2", 2)]
    assert (first["machines_total"], first["offset"], first["next_offset"]) == (3, 0, 2)
    assert first["builds"] == [
        {"build": "31001", "machines": 1, "records": 1},
        {"build": "31000", "machines": 2, "records": 5},
    ]
    rest = client.get(f"/crashes/{gid}.json?limit=2&offset=2").json()
    assert [m["machine_id"] for m in rest["machines"]] == ["m3"]
    assert rest["next_offset"] is None
    page = client.get(f"/crashes/{gid}?limit=2").text
    assert "3 machines, most crashes first: 1–2 shown." in page
    assert 'id="machines-next" href="?limit=2&amp;offset=2"' in page
    assert 'id="machines-first"' not in page
    assert 'id="machines-first"' in client.get(f"/crashes/{gid}?limit=2&offset=2").text
    for bad in ("limit=0", "limit=5001", "offset=-1", "offset=x"):
        answer = client.get(f"/crashes/{gid}.json?{bad}")
        assert answer.status_code == 400 and "message" in answer.json()


def test_crash_drill_down_and_never_guilty(filled: TestClient) -> None:
    top = filled.get("/crashes.json").json()["guilties"]
    assert [(g["function"], g["total"], g["machines"]) for g in top] == [
        ("clock_nanosleep@GLIBC_2.2.5()", 2, 2),
        ("dump_stack", 1, 1),
    ]
    gid = top[0]["guilty_id"]
    detail = filled.get(f"/crashes/{gid}.json").json()
    assert {m["machine_id"] for m in detail["machines"]} == {"machine-a", "b"}
    bt = filled.get(f"/crashes/{gid}/backtraces.json").json()
    assert len(bt["crashes"]) == 2
    crash = bt["crashes"][0]
    assert crash["process"] == "/usr/bin/sleep" and crash["signal"] == 11
    assert crash["guilty_frame"] == 0
    html = filled.get(f"/crashes/{gid}/backtraces").text
    assert '<tr class="guilty">' in html
    assert "signal 11 (SIGSEGV)" in html
    assert "__libc_start_main@@GLIBC_2.34()" in html
    value = crash["frames"][0]["offer"]
    r = filled.post(
        "/crashes/blacklist", data={"frame": value, "next": "/crashes"}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/crashes"
    first_job = wait_for_regroup(filled)
    # Only the crashes of the marked frame's group (2 of the 3) had to be walked.
    assert (first_job["state"], first_job["done"], first_job["changed"]) == ("done", 2, 2)
    regrouped = filled.get("/crashes.json").json()
    assert regrouped["guilties"][0]["function"] == "__nanosleep()"
    assert regrouped["guilties"][0]["total"] == 2
    assert regrouped["regroup"] == first_job
    listed = filled.get("/crashes/blacklist.json").json()
    assert listed["blacklist"] == [
        {"function": "clock_nanosleep@GLIBC_2.2.5()", "module": "libc.so.6"}
    ]
    assert listed["regroup"] == first_job
    assert [(h["action"], h["function"], h["who"]) for h in listed["history"]] == [
        ("add", "clock_nanosleep@GLIBC_2.2.5()", "")
    ]
    r = filled.post(
        "/crashes/blacklist/remove", data={"frame": value}, headers={"accept": "application/json"}
    )
    assert r.status_code == 202
    answer = r.json()
    assert answer["blacklist_changed"] == 1 and answer["job"]["id"] != first_job["id"]
    assert wait_for_regroup(filled)["id"] == answer["job"]["id"]
    assert filled.get("/crashes.json").json()["guilties"][0]["function"] == (
        "clock_nanosleep@GLIBC_2.2.5()"
    )
    # Removing a frame that is not listed changes nothing and queues nothing.
    r = filled.post(
        "/crashes/blacklist/remove", data={"frame": value}, headers={"accept": "application/json"}
    )
    assert r.status_code == 200 and r.json()["blacklist_changed"] == 0
    assert r.json()["job"]["id"] == answer["job"]["id"]


def wait_for_regroup(client: TestClient, timeout: float = 20.0) -> dict[str, Any]:
    """Poll /crashes/regroup.json until the regroup job is done or failed; return it."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get("/crashes/regroup.json").json()["regroup"]
        if job is not None and job["state"] in ("done", "failed"):
            return dict(job)
        assert time.monotonic() < deadline, f"regroup job still {job}"
        time.sleep(0.05)


def test_the_post_answers_at_once_and_the_pages_show_the_queued_job(
    settings: Settings,
) -> None:
    # No job runner in this app: the job stays queued until the test runs it.
    with TestClient(create_app(settings.replace(job_poll_s=0.0))) as client:
        store = _store(client)
        load(store, sample_fleet(SCRIPT, second_build="9"))
        assert client.get("/crashes/regroup.json").json() == {"regroup": None}
        assert 'id="regroup"' not in client.get("/crashes").text
        r = client.post(
            "/crashes/blacklist",
            data={"frame": '["clock_nanosleep@GLIBC_2.2.5()", "libc.so.6"]'},
            headers={"accept": "application/json"},
        )
        assert r.status_code == 202
        job = r.json()["job"]
        assert r.json()["blacklist_changed"] == 1
        assert (job["kind"], job["state"], job["done"]) == ("regroup", "pending", 0)
        assert client.get("/crashes.json").json()["regroup"]["state"] == "pending"
        for path in ("/crashes", "/crashes/blacklist"):
            assert "Regrouping crash records: waiting to start." in client.get(path).text
        # Nothing regrouped yet: the old group still leads.
        top = client.get("/crashes.json").json()["guilties"]
        assert top[0]["function"] == "clock_nanosleep@GLIBC_2.2.5()"

        # Half-way (as a running job reports it).
        store.run_write(
            lambda c: c.execute(
                update(jobs)
                .where(jobs.c.id == job["id"])
                .values(state="running", done=12000, total=363000)
            )
        )
        assert "Regrouping crash records: 12,000 of 363,000 (3 %)." in client.get("/crashes").text

        store.run_write(
            lambda c: c.execute(
                update(jobs).where(jobs.c.id == job["id"]).values(state="pending", done=0)
            )
        )
        assert asyncio.run(JobRunner(store).run_next()) is True
        assert client.get("/crashes.json").json()["guilties"][0]["function"] == "__nanosleep()"
        page = client.get("/crashes").text
        assert 'id="regroup"' not in page and "__nanosleep()" in page
        # The jobs status page lists it: a revision of the crash consumer, in place.
        (listed,) = client.get("/consumers.json").json()["reprocess"]
        assert (listed["id"], listed["kind"], listed["state"]) == (job["id"], "regroup", "done")
        # Marking a frame: only the crashes of its group were walked.
        assert listed["params"] == {"source": "clearlinux", "consumer": "clearlinux_crashes",
                                    "mode": "revise",
                                    "narrow": [["clock_nanosleep@GLIBC_2.2.5()", "libc.so.6"]]}
        assert "regroup (in place)" in client.get("/consumers").text


def test_a_failed_regroup_is_shown(settings: Settings) -> None:
    with TestClient(create_app(settings.replace(job_poll_s=0.0))) as client:
        store = _store(client)

        def failed_job(conn: Connection) -> None:
            job_id = enqueue(conn, "regroup")
            assert claim(conn, ("regroup",), "owner", 60.0) is not None
            fail(conn, job_id, "owner", "OperationalError: disk I/O error")

        store.run_write(failed_job)
        for path in ("/crashes", "/crashes/blacklist"):
            assert "Regrouping crash records failed: OperationalError: disk I/O error" in (
                client.get(path).text
            )
        job = client.get("/crashes/regroup.json").json()["regroup"]
        assert (job["state"], job["message"]) == ("failed", "OperationalError: disk I/O error")
        assert 'action="/crashes/regroup"' in client.get("/crashes").text

        # "Regroup again" queues a new job, which the runner then completes.
        again = client.post("/crashes/regroup", headers={"accept": "application/json"})
        assert again.status_code == 202
        assert again.json()["job"]["state"] == "pending" and again.json()["job"]["id"] != job["id"]
        assert asyncio.run(JobRunner(store).run_next()) is True
        done = client.get("/crashes/regroup.json").json()["regroup"]
        assert (done["id"], done["state"]) == (again.json()["job"]["id"], "done")
        assert 'id="regroup"' not in client.get("/crashes").text
        refused = client.post("/crashes/regroup", headers={"origin": "http://evil.example"})
        assert refused.status_code == 403


def test_the_server_resumes_a_job_left_running_by_a_dead_process(settings: Settings) -> None:
    store = Store(settings)
    store.migrate()
    try:
        load(store, sample_fleet(SCRIPT, second_build="9"))

        def orphan(conn: Connection) -> None:
            add_to_blacklist(conn, [("clock_nanosleep@GLIBC_2.2.5()", "libc.so.6")])
            job_id = enqueue(conn, "regroup")
            stale = time.time() - 120
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(state="running", owner="killed", heartbeat=stale, started_at=stale)
            )

        store.run_write(orphan)
    finally:
        store.close()
    with TestClient(create_app(settings)) as client:
        assert wait_for_regroup(client)["state"] == "done"
        assert client.get("/crashes.json").json()["guilties"][0]["function"] == "__nanosleep()"


@pytest.mark.parametrize(
    "form", [{}, {"frame": "not json"}, {"frame": '["", "x"]'}, {"frame": "[1, 2]"}]
)
@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_bad_blacklist_posts(client: TestClient, form: dict[str, str]) -> None:
    r = client.post("/crashes/blacklist", data=form)
    assert r.status_code == 400 and r.json()["message"]


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_cross_origin_post_is_refused(client: TestClient) -> None:
    r = client.post(
        "/crashes/blacklist",
        data={"frame": '["f()", "m"]'},
        headers={"origin": "http://evil.example"},
    )
    assert r.status_code == 403
    assert client.get("/crashes/blacklist.json").json()["blacklist"] == []


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_redirect_stays_local(client: TestClient) -> None:
    r = client.post(
        "/crashes/blacklist",
        data={"frame": '["f()", "m"]', "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/crashes"


def test_mce_thermal_population_twins(filled: TestClient) -> None:
    m = filled.get("/mce.json").json()
    assert m["by_class"] == [["org.clearlinux/mce/corrected", 1]]
    assert m["by_status"] == [["00010090", 1]]
    assert sum(filled.get("/thermal.json").json()["counts"]) == 1
    pop = filled.get("/population.json", params={"bucket": "week"}).json()
    assert sum(pop["series"]["31000"]) == 1 and sum(pop["series"]["9"]) == 1
    assert "rotate" in filled.get("/population").text
    html = filled.get("/population", params={"bucket": "week"}).text
    charts = json.loads(re.search(r'id="page-charts">(.*?)</script>', html, re.S).group(1))
    assert charts[0]["labels"][-1] == pop["buckets"][-1] + " (so far)"
    assert not any("so far" in label for label in charts[0]["labels"][:-1])
    past = filled.get("/population", params={"from": "2024-01-01", "to": "2024-01-31"}).text
    assert "(so far)" not in past


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_static_chart_library_is_served(client: TestClient) -> None:
    r = client.get("/static/vendor/chart-4.6.1.umd.min.js")
    assert r.status_code == 200 and b"Chart" in r.content[:2000]
    assert client.get("/static/js/charts.js").status_code == 200


def test_nodes_page_lists_websocket_nodes_and_message_types(client: TestClient) -> None:
    from downlink.store.inserts import insert_records
    from downlink.testing.consumers import catch_up

    hello = {"msg": "system.connected", "network_id": "12D3KooWPeer", "name": "<b>alice</b>",
             "chain": "Local Testnet"}
    rows = [
        rec(
            source="substrate",
            classification=f"substrate/{msg}",
            machine_id="12D3KooWPeer",
            payload=json.dumps(hello) if msg == "system.connected" else "{}",
            build="",
            # What the websocket endpoint keeps of the connection, in each record.
            attrs={"conn": "c1", "node": "n1", "ip": "127.0.0.1", "audit": False,
                   "since": 1.0, "msg": msg, "announced": msg == "system.connected"},
        )
        for msg in ("system.connected", "system.interval", "system.interval")
    ]
    _store(client).run_write(insert_records, rows)
    catch_up(_store(client))  # the connection rows, after the ack
    data = client.get("/substrate.json").json()
    assert [n["peer_id"] for n in data["nodes"]] == ["12D3KooWPeer"]
    assert {(m["msg"], m["count"]) for m in data["messages"]} == {
        ("system.connected", 1),
        ("system.interval", 2),
    }
    html = client.get("/substrate").text
    assert "&lt;b&gt;alice&lt;/b&gt;" in html and "system.interval" in html
    assert client.get("/substrate.json?minutes=0").status_code == 400


def test_comment_and_hide_a_crash_group(filled: TestClient) -> None:
    gid = filled.get("/crashes.json").json()["guilties"][0]["guilty_id"]
    r = filled.post(
        f"/crashes/{gid}", data={"comment": "known: bug 42", "hide": "1"}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == f"/crashes/{gid}"
    assert gid not in [g["guilty_id"] for g in filled.get("/crashes.json").json()["guilties"]]
    page = filled.get(f"/crashes/{gid}").text
    assert 'value="known: bug 42"' in page and "hidden from the top crashes" in page
    filled.post(f"/crashes/{gid}", data={"comment": "known: bug 42"})
    top = filled.get("/crashes.json").json()["guilties"]
    assert top[0]["guilty_id"] == gid and top[0]["comment"] == "known: bug 42"
    assert filled.post(f"/crashes/{gid}", data={"comment": "x" * 81}).status_code == 400
    assert filled.post("/crashes/999999", data={"comment": ""}).status_code == 404


def test_blank_values_read_none(client: TestClient) -> None:
    crash = "org.clearlinux/crash/clr"
    load(_store(client), [rec(build="", host_type=""), rec(build="", classification=crash,
                                                          payload=CRASH)])
    html = client.get("/builds").text
    assert '<tr><td>(none)</td><td class="num">2</td><td></td></tr>' in html  # no crashes link
    charts = json.loads(re.search(r'id="page-charts">(.*?)</script>', html, re.S).group(1))
    assert charts[0]["labels"] == ["(none)"] and charts[0]["links"] == [""]
    assert client.get("/builds.json").json()["builds"] == [{"build": "", "records": 2}]
    assert "(none): 1" in client.get("/crashes").text
    assert "<td>(none)</td>" in client.get("/stats").text
    assert "<td>(none)</td>\n  <td>(none)</td>" in client.get("/records").text


def test_a_record_page_shows_the_fields_its_source_adds(client: TestClient) -> None:
    crash, other = load(
        _store(client),
        [
            rec(classification="org.clearlinux/crash/clr", payload=CRASH),
            rec(source="substrate", classification="substrate/system.interval", payload="{}"),
        ],
    )
    gid = client.get(f"/records/{crash['id']}.json").json()["guilty_id"]
    assert gid is not None
    page = client.get(f"/records/{crash['id']}").text
    assert f'<dt>Crash group</dt><dd><a href="/crashes/{gid}">{gid}</a></dd>' in page
    # Clear Linux's field is its records' only: the core's record page names no source.
    page = client.get(f"/records/{other['id']}").text
    assert "<dt>Payload version</dt>" in page and "Crash group" not in page
