"""One rule for NUL characters in every text field, the same on SQLite and PostgreSQL.

Real HTTP and websockets against ``downlink serve``, on both databases, with and
without the spool: a NUL in any field is refused naming the field (400; a bulk item's
own 400; a skipped websocket message; a CLI error), nothing of it is stored, and the
good records sent after it reach the database at once (issue 9: on PostgreSQL with the
spool one such record used to be acked, spooled and then jam every later record).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import orjson
from click.testing import CliRunner
from sqlalchemy import create_engine, func, inspect, select
from websockets.asyncio.client import connect

from downlink.cli.main import cli
from downlink.store.tables import records
from downlink.testing.live import LiveServer
from tests.hardening.records import TID, stored_rows, v2_headers, v3_record
from tests.sources.substrate.client import flush, frame, metric, send_frames

# (v3 JSON key, the name the message uses, a value with a NUL that passes the field's
# other rules, so only the NUL can be what is refused)
NUL_FIELDS = [
    ("system_name", "System-Name", "deb\x00ian"),
    ("kernel_version", "Kernel-Version", "6.1.0\x00-x"),
    ("machine_id", "Machine-Id", "ab\x00cd"),
    ("host_type", "Host-Type", "Dell\x00|XPS|1"),
    ("classification", "Classification", "org.clearlinux/he\x00llo/world"),
    ("board_name", "Board-Name", "board\x00"),
    ("cpu_model", "Cpu-Model", "cpu\x00"),
    ("bios_version", "Bios-Version", "bios\x00"),
    ("build", "Build", "1\x002"),
    ("record_format_version", "Record-Format-Version", "4\x00"),
]


def _post_json(client: httpx.Client, record: dict[str, Any]) -> httpx.Response:
    return client.post("/v3/collector", content=orjson.dumps(record),
                       headers={"Content-Type": "application/json", "X-Telemetry-TID": TID})


def test_collector_and_bulk_refuse_nul_naming_the_field(server: LiveServer, db_url: str) -> None:
    good: list[str] = []
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for key, name, value in NUL_FIELDS:
            resp = _post_json(client, v3_record(payload=f"bad-{key}", **{key: value}))
            assert resp.status_code == 400, (key, resp.text)
            assert resp.json() == {"message": f"{name} contains a NUL character, "
                                              "which cannot be stored"}
        resp = _post_json(client, v3_record(payload="bad\x00payload"))
        assert resp.status_code == 400 and "NUL" in resp.json()["message"]
        resp = client.post("/v2/collector", content=b"nul\x00body",
                           headers=v2_headers(v3_record()))
        assert resp.status_code == 400 and "NUL" in resp.json()["message"]

        # Good records right behind the bad ones are stored at once, with an id (on
        # PostgreSQL with the spool they used to be spooled behind a jammed record).
        for i in range(3):
            record = v3_record(payload=f"good-{i}")
            resp = _post_json(client, record)
            assert resp.status_code == 201, resp.text
            assert isinstance(resp.json()["id"], int)
            good.append(record["payload"])

        # Bulk: the bad item gets its own 400, the others are stored all the same.
        items = [v3_record(payload="bulk-0"), v3_record(payload="bulk-bad",
                 system_name="x\x00y"), v3_record(payload="bulk-2")]
        resp = client.post("/api/v1/records/bulk", content=orjson.dumps(items),
                           headers={"Content-Type": "application/json", "X-Telemetry-TID": TID})
        assert resp.status_code == 200, resp.text
        doc = resp.json()
        assert (doc["accepted"], doc["duplicates"], doc["rejected"]) == (2, 0, 1)
        ok0, bad, ok2 = doc["results"]
        assert bad == {"index": 1, "status": 400,
                       "message": "System-Name contains a NUL character, which cannot be stored"}
        assert ok0["status"] == ok2["status"] == 201
        assert isinstance(ok0["id"], int) and isinstance(ok2["id"], int)
        good += ["bulk-0", "bulk-2"]

        # A NUL in a v2 header never reaches Downlink: the HTTP parser refuses it.
        raw = ("POST /v2/collector HTTP/1.1\r\nHost: x\r\nSystem-Name: a\x00b\r\n"
               "Content-Length: 0\r\nConnection: close\r\n\r\n").encode("latin-1")
        assert _raw_status(server, raw) == 400

        assert metric(server, "downlink_records_rejected_total", source="clearlinux",
                      reason="unstorable") == len(NUL_FIELDS) + 3

    stored = stored_rows(db_url)
    assert [r["payload"] for r in stored] == good
    assert all("\x00" not in str(v) for r in stored for v in r.values())


def _raw_status(server: LiveServer, request: bytes) -> int:
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        head = sock.recv(65536)
    return int(head.split(b" ", 2)[1])


def test_websocket_messages_with_nul_are_skipped_and_the_connection_goes_on(
    live: LiveServer, db_url: str
) -> None:
    server = live  # the spool plays no part before a message is parsed
    url = server.url.replace("http://", "ws://", 1) + "/"
    hostile: list[str] = [
        # V2: in the node id, a body field, a nested key, the message type
        json.dumps({"id": "1\u0000", "ts": "2021-01-13T12:38:25Z", "payload": {"msg": "x"}}),
        json.dumps(frame(1, 90, target="a\u0000b")),
        json.dumps(frame(1, 91, nested={"k\u0000": 1})),
        json.dumps(frame(1, 92, msg="system.connected\u0000", network_id="peer\u0000")),
        # V1 (flat): identity fields of system.connected go to node_connections
        json.dumps({"msg": "system.connected", "ts": "2021-01-13T12:38:25Z",
                    "name": "alice\u0000", "network_id": "12D3Koo"}),
    ]

    async def main() -> None:
        async with connect(url) as ws:
            for k, junk in enumerate(hostile):
                await ws.send(junk)
                await send_frames(ws, [frame(1, k)])
            answer = await flush(ws)
            assert answer["stored"] == len(hostile)  # the good ones, all of them

    asyncio.run(main())
    assert metric(server, "downlink_ws_malformed_messages_total", reason="unstorable") == len(
        hostile
    )
    stored = [r for r in stored_rows(db_url) if r["source"] == "substrate"]
    assert len(stored) == len(hostile)
    assert all("\\u0000" not in r["payload"] and "\x00" not in r["payload"] for r in stored)


def _dump_line(**changes: Any) -> bytes:
    doc = {
        "classification": "a/b/c",
        "ts_capture": "2026-01-01 00:00:00 UTC",
        "ts_reception": "2026-01-01 00:00:01 UTC",
        "severity": 1,
        "payload": "p",
        **changes,
    }
    return orjson.dumps(doc) + b"\n"


IMPORT_CASES = [
    ({"machine_type": "dell\u0000"}, "host_type"),
    ({"system_name": "deb\u0000ian"}, "system_name"),
    ({"attrs": {"target": "x\u0000"}}, "attrs.target"),
    ({"tid": "t\u0000"}, "tid"),
    ({"source": "s\u0000"}, "source"),
]


def test_import_names_the_line_and_field_and_writes_nothing(db_url: str, tmp_path: Path) -> None:
    for k, (changes, field) in enumerate(IMPORT_CASES):
        dump = tmp_path / f"nul{k}.ndjson"
        dump.write_bytes(_dump_line() + _dump_line(**changes) + _dump_line())
        res = CliRunner().invoke(cli, ["import", str(dump), "--database-url", db_url])
        assert res.exit_code != 0
        assert f"nul{k}.ndjson:2: {field} contains a NUL character" in res.output
    assert _count(db_url) == 0


def _count(db_url: str) -> int:
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        if not inspect(engine).has_table("records"):
            return 0  # the import stopped before it even migrated
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(records)).scalar_one())
    finally:
        engine.dispose()


def test_admin_writes_refuse_nul_too(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url, timeout=10) as client:
        resp = client.post("/benchmarks", json={"setup": {"nodes": ["a", "b\u0000"]}})
        assert resp.status_code == 400
        assert resp.json() == {"message": "setup.nodes[1] contains a NUL character, "
                                          "which cannot be stored"}
        assert client.post("/benchmarks", json={"setup": {"nodes": ["a"]}}).status_code == 201
        resp = client.post("/crashes/blacklist", data={"frame": json.dumps(["f\u0000", "m"])},
                           headers={"Accept": "application/json"})
        assert resp.status_code == 400
        assert resp.json() == {"message": "frame[0] contains a NUL character, "
                                          "which cannot be stored"}
        ok = client.post("/crashes/blacklist", data={"frame": json.dumps(["f", "m"])},
                         headers={"Accept": "application/json"})
        assert ok.status_code == 202, ok.text
