"""Over real HTTP: HEAD works wherever GET does, and the access log in both formats."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest

from downlink.settings import Settings, SettingsError
from downlink.testing.live import LiveServer
from tests.wire import v2_headers

HEAD_PATHS = (
    "/-/health",
    "/api/records",
    "/records",
    "/builds",
    "/crashes",
    "/population.json",
    "/docs",
    "/openapi.json",
    "/static/js/charts.js",
)


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_head_answers_like_get_without_a_body(live: LiveServer) -> None:
    for path in HEAD_PATHS:
        get = httpx.get(live.url + path)
        head = httpx.head(live.url + path)
        assert get.status_code == 200, (path, get.text)
        assert (head.status_code, head.content) == (200, b""), path
        assert head.headers["content-type"] == get.headers["content-type"]
        if path.startswith("/static/"):
            assert head.headers["content-length"] == str(len(get.content))
    # Unknown paths stay 404 and POST-only paths 405.
    assert httpx.head(live.url + "/no/such/page").status_code == 404
    assert httpx.head(live.url + "/crashes/blacklist/remove").status_code == 405


def _lines(log: Path, count: int) -> list[str]:
    """Access-log lines, leaving out the health probes LiveServer sends while it starts
    (their lines can be written after the server already answered one)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [
            ln
            for ln in log.read_text().splitlines()
            if ln.startswith(("20", '{"ts"')) and "/-/health" not in ln
        ]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_json_access_log_has_one_line_per_request(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    server = LiveServer(db_url, env={"DOWNLINK_ACCESS_LOG": "json"}, log=log).start()
    try:
        before = len(_lines(log, 0))
        r = httpx.post(server.url + "/v2/collector", headers=v2_headers(), content=b"hi")
        assert r.status_code == 201
        httpx.get(server.url + '/records?q=%22x%20y', headers={"user-agent": "tester/1"})
        httpx.get(server.url + "/nope")
        lines = _lines(log, before + 3)[before:]
    finally:
        server.stop()
    items = [orjson.loads(line) for line in lines]
    assert [(i["method"], i["path"], i["status"]) for i in items] == [
        ("POST", "/v2/collector", 201),
        ("GET", "/records", 200),
        ("GET", "/nope", 404),
    ]
    page = items[1]
    assert page["query"] == "q=%22x%20y" and page["user_agent"] == "tester/1"
    assert page["client"] == "127.0.0.1" and page["bytes"] > 1000 and page["ms"] >= 0
    assert page["ts"].endswith("Z") and page["http"] == "1.1"


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_plain_access_log_and_off(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "plain.log"
    server = LiveServer(db_url, env={"DOWNLINK_ACCESS_LOG": "plain"}, log=log).start()
    try:
        before = len(_lines(log, 0))
        httpx.get(server.url + "/builds.json?from=2026-01-01")
        line = _lines(log, before + 1)[before]
    finally:
        server.stop()
    parts = line.split(" ")
    assert parts[1] == "127.0.0.1"
    assert " ".join(parts[2:5]) == '"GET /builds.json?from=2026-01-01 HTTP/1.1"'
    assert parts[5] == "200" and int(parts[6]) > 0 and parts[7].endswith("ms")

    quiet = tmp_path / "off.log"
    server = LiveServer(db_url, log=quiet).start()
    try:
        httpx.get(server.url + "/builds.json")
    finally:
        server.stop()
    assert "/builds.json" not in quiet.read_text()


def test_an_unknown_access_log_format_is_refused() -> None:
    with pytest.raises(SettingsError, match="DOWNLINK_ACCESS_LOG"):
        Settings(access_log="yes")
