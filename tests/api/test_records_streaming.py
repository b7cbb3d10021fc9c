"""GET /api/records over large records: streamed in bounded memory, JSON pages by bytes.

A live server holds records of 4 MiB (the collector takes bodies up to 8 MiB with no
token by default). Downloading all of them as JSON, NDJSON and CSV must not grow the
server by more than a few parts of the answer, on SQLite and PostgreSQL; JSON pages
stop at DOWNLINK_API_PAGE_BYTES and say how to get the next page.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from downlink.testing.live import LiveServer
from tests.hardening.records import v2_headers, v3_record

RECORDS = 24
PAYLOAD = 4 * 1024 * 1024
PAGE_BYTES = 10 * 1024 * 1024  # two records a page


@pytest.fixture(scope="module")
def big(
    module_db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, list[int]]]:
    """A server holding the large records, shared by the module's tests (they only
    read; the memory test runs first, on a server that has served nothing yet)."""
    log = tmp_path_factory.mktemp("big") / "server.log"
    server = LiveServer(module_db_url, env={"DOWNLINK_API_PAGE_BYTES": str(PAGE_BYTES)},
                        log=log).start()
    ids = []
    try:
        with httpx.Client(timeout=60) as c:
            for n in range(RECORDS):
                payload = (os.urandom(PAYLOAD // 2).hex()[: PAYLOAD - 8] + f"{n:08d}").encode()
                record = v3_record()
                resp = c.post(server.url + "/v2/collector", content=payload,
                              headers=v2_headers(record))
                assert resp.status_code == 201, resp.text
                ids.append(resp.json()["id"])
        yield server, ids
    finally:
        server.stop()


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class PeakRss:
    """The largest RSS of a process while the block runs, sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, _rss_mib(self.pid))
            except (OSError, AssertionError):  # the process has exited
                return
            time.sleep(0.01)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _download(url: str) -> tuple[httpx.Headers, bytes]:
    with httpx.stream("GET", url, timeout=120) as resp:
        assert resp.status_code == 200
        body = b"".join(resp.iter_bytes())
    return resp.headers, body


def test_every_format_streams_in_bounded_memory(big: tuple[LiveServer, list[int]]) -> None:
    server, ids = big
    assert server.proc is not None
    total = RECORDS * PAYLOAD / 2**20
    before = _rss_mib(server.proc.pid)
    with PeakRss(server.proc.pid) as rss:
        _, ndjson = _download(server.url + "/api/records?format=ndjson")
        _, csv_text = _download(server.url + "/api/records?format=csv")
        _, json_page = _download(server.url + "/api/records")
    grown = rss.peak - before
    # Built whole, each answer held its records two or three times over (>200 MiB).
    assert grown < 60, f"server grew by {grown:.0f} MiB serving {total:.0f} MiB of records"
    lines = [orjson.loads(line) for line in ndjson.splitlines()]
    assert [r["id"] for r in lines] == sorted(ids, reverse=True)
    assert all(len(r["payload"]) == PAYLOAD for r in lines)
    csv.field_size_limit(2 * PAYLOAD)
    rows = list(csv.reader(io.StringIO(csv_text.decode())))
    assert len(rows) == RECORDS + 1 and rows[0][0] == "id"
    assert [int(row[0]) for row in rows[1:]] == sorted(ids, reverse=True)
    assert len(orjson.loads(json_page)["records"]) == 2


def test_export_command_runs_in_bounded_memory(
    big: tuple[LiveServer, list[int]], tmp_path: Path
) -> None:
    server, ids = big
    out = tmp_path / "dump.ndjson"
    env = {**os.environ, "DATABASE_URL": server.database_url}
    proc = subprocess.Popen([sys.executable, "-m", "downlink", "export", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with PeakRss(proc.pid) as rss:
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    exported = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [r["id"] for r in exported] == sorted(ids)
    # Python with the package imported is about 80 MiB; reading the 2,000 records of a
    # chunk at once held all 96 MiB of these (and more as it encoded them).
    assert rss.peak < 150, f"downlink export peaked at {rss.peak:.0f} MiB"


def test_json_pages_are_bounded_by_bytes_and_link_to_the_next(
    big: tuple[LiveServer, list[int]],
) -> None:
    server, ids = big
    seen: list[int] = []
    url: str | None = "/api/records?limit=9"
    pages = 0
    while url is not None:
        headers, body = _download(server.url + url)
        page = orjson.loads(body)
        pages += 1
        assert len(body) < PAGE_BYTES + 100_000
        seen += [r["id"] for r in page["records"]]
        # The shape stays {"records", "next_cursor"}; "next" and "cut_by_bytes" are added.
        assert set(page) == {"records", "next_cursor", "next", "cut_by_bytes"}
        if page["next"] is not None:
            assert page["next_cursor"] == page["records"][-1]["id"]
            assert headers["X-Next-Cursor"] == str(page["next_cursor"])
            assert f"before_id={page['next_cursor']}" in page["next"]
            assert "limit=9" in page["next"]
        url = page["next"]
        assert page["cut_by_bytes"] == (page["next"] is not None)
    assert seen == sorted(ids, reverse=True)
    assert pages == RECORDS // 2
