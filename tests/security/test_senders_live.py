"""Trust on first use of sender ids, per source, against real servers on both databases.

Posts come from different networks through ``X-Forwarded-For`` (uvicorn trusts it
from 127.0.0.1, as behind a proxy on the same host: docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from websockets.asyncio.client import connect

from downlink.cli.main import cli
from downlink.security.senders import CHANGES_POLL_SECONDS
from downlink.testing.consumers import wait_caught_up
from downlink.testing.live import LiveServer
from tests.hardening.records import v3_record
from tests.sources.substrate.client import connected, flush, frame, send_frames
from tests.wire import TID, v2_headers

HOME = "198.51.100.7"  # the real sender's network
HOME_TOO = "198.51.100.200"  # the same /24
ELSEWHERE = "203.0.113.9"
SECRET = "X-Downlink-Sender-Secret"

Start = Callable[..., LiveServer]


@pytest.fixture
def start(db_url: str, tmp_path: Path) -> Iterator[Start]:
    """Start servers on the test's database with extra settings."""
    started: list[LiveServer] = []

    def run(workers: int = 1, **env: str) -> LiveServer:
        server = LiveServer(db_url, workers=workers, env=env,
                            log=tmp_path / f"server{len(started)}.log").start(timeout=60)
        started.append(server)
        return server

    try:
        yield run
    finally:
        for server in started:
            server.stop()


def _from(address: str, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": address, **headers}


def _structure(uid: str, clusters: int) -> dict[str, Any]:
    return {"installation_structure": {
        "master_node_uid": uid, "allocated_nodes_num": 0, "unallocated_nodes_num": 0,
        "clusters_num": clusters, "clusters": [],
    }}


def _action_log(uid: str, external_id: int) -> dict[str, Any]:
    return {"action_logs": [{
        "master_node_uid": uid, "external_id": external_id,
        "body": {"id": external_id, "action_type": "http_request", "action_name": "x",
                 "start_timestamp": "2015-01-01T10:00:00", "end_timestamp":
                 "2015-01-01T10:00:01", "is_sent": False, "actor_id": "a",
                 "action_group": "g", "cluster_id": 1, "task_uuid": None,
                 "additional_info": {}},
    }]}


def _senders(server: LiveServer, source: str) -> dict[str, dict[str, Any]]:
    doc = httpx.get(f"{server.url}/senders.json?all=1&source={source}", timeout=10).json()
    return {s["sender_id"]: s for s in doc["senders"]}


def test_fuelstats_refuses_a_master_node_uid_posted_from_elsewhere(start: Start) -> None:
    server = start(DOWNLINK_SENDER_BINDING="fuelstats")
    uid = "uid-" + secrets.token_hex(6)
    url = server.url + "/api/v1/installation_structure/"
    with httpx.Client(timeout=30) as http:
        first = http.post(url, json=_structure(uid, 1), headers=_from(HOME))
        assert first.status_code == 201, first.text
        secret = first.headers[SECRET]
        assert len(secret) >= 32
        # The same network: the same sender, no new secret.
        again = http.post(url, json=_structure(uid, 1), headers=_from(HOME_TOO))
        assert again.status_code == 200 and SECRET not in again.headers

        spoofed = http.post(url, json=_structure(uid, 99), headers=_from(ELSEWHERE))
        assert spoofed.status_code == 403
        body = spoofed.json()
        assert body["status"] == "error" and uid in body["message"]
        assert ELSEWHERE not in body["message"] and HOME not in body["message"]
        logs = http.post(server.url + "/api/v1/action_logs/", json=_action_log(uid, 1),
                         headers=_from(ELSEWHERE))
        assert logs.status_code == 403 and logs.json()["status"] == "error"
        # Nothing of the refused posts was stored.
        info = http.get(f"{server.url}/api/v1/json/installation_info/{uid}").json()
        assert info["structure"]["clusters_num"] == 1
        logs = http.post(server.url + "/api/v1/action_logs/", json=_action_log(uid, 1),
                         headers=_from(HOME))
        assert logs.json()["action_logs"][0]["status"] == "added"  # not stored before

        # The sender kept its secret: from anywhere with it, then never without it.
        moved = http.post(url, json=_structure(uid, 2),
                          headers=_from(ELSEWHERE, **{SECRET: secret}))
        assert moved.status_code == 200, moved.text
        home = http.post(url, json=_structure(uid, 3), headers=_from(HOME))
        assert home.status_code == 403
        wrong = http.post(url, json=_structure(uid, 3), headers=_from(HOME, **{SECRET: "x" * 32}))
        assert wrong.status_code == 403
        info = http.get(f"{server.url}/api/v1/json/installation_info/{uid}").json()
        assert info["structure"]["clusters_num"] == 2

    row = _senders(server, "fuelstats")[uid]
    assert row["refused"] == 4 and row["flagged"] == 0 and row["secret_seen"] is True
    assert row["last_mismatch_reason"] == "wrong secret"
    assert row["last_mismatch_from"] == HOME
    assert row["network"] == "198.51.100.0/24"


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_fuelstats_binding_is_off_by_default(start: Start) -> None:
    server = start()
    uid = "uid-" + secrets.token_hex(6)
    url = server.url + "/api/v1/installation_structure/"
    assert httpx.post(url, json=_structure(uid, 1), headers=_from(HOME)).status_code == 201
    spoofed = httpx.post(url, json=_structure(uid, 5), headers=_from(ELSEWHERE))
    assert spoofed.status_code == 200 and SECRET not in spoofed.headers
    assert _senders(server, "fuelstats") == {}


def _record(machine: str, build: str, address: str, **extra: str) -> tuple[dict[str, str], bytes]:
    headers = v2_headers({"machine_id": machine, "build": f'"{build}"'})
    return {**headers, **_from(address, **extra)}, b"payload"


def _builds(server: LiveServer) -> dict[str, int]:
    wait_caught_up(server.url)
    doc = httpx.get(server.url + "/builds.json", timeout=10).json()
    return {b["build"]: b["records"] for b in doc["builds"]}


def test_clearlinux_stores_records_of_a_spoofed_machine_id_flagged_and_out_of_dashboards(
    start: Start,
) -> None:
    server = start(DOWNLINK_SENDER_BINDING="clearlinux")
    machine = secrets.token_hex(16)
    url = server.url + "/v2/collector"
    with httpx.Client(timeout=30) as http:
        headers, body = _record(machine, "41000", HOME)
        first = http.post(url, headers=headers, content=body)
        assert first.status_code == 201, first.text
        assert "sender_flagged" not in first.json()
        secret = first.headers[SECRET]
        headers, body = _record(machine, "41001", ELSEWHERE)
        spoofed = http.post(url, headers=headers, content=body)
        # Acknowledged (the unchanged client would re-send a refused record for ever)...
        assert spoofed.status_code == 201
        assert spoofed.json()["sender_flagged"] is True
        # ... stored and shown flagged in the records API ...
        stored = http.get(f"{server.url}/api/records/{spoofed.json()['id']}").json()
        assert stored["sender_flagged"] is True and stored["build"] == "41001"
        # ... a different machine id from there is its own sender ...
        headers, body = _record(secrets.token_hex(16), "41002", ELSEWHERE)
        other = http.post(url, headers=headers, content=body)
        assert other.status_code == 201 and "sender_flagged" not in other.json()
        # ... a wrong secret does not match even from the bound network, once the
        # binding is cached (the known sender's fast path sees the header) ...
        headers, body = _record(machine, "41005", HOME_TOO)
        assert "sender_flagged" not in http.post(url, headers=headers, content=body).json()
        headers, body = _record(machine, "41006", HOME_TOO, **{SECRET: "not-" + secret})
        assert http.post(url, headers=headers, content=body).json()["sender_flagged"] is True
        # ... and the secret works from anywhere (and from then on is required).
        headers, body = _record(machine, "41003", ELSEWHERE, **{SECRET: secret})
        assert "sender_flagged" not in http.post(url, headers=headers, content=body).json()
        headers, body = _record(machine, "41004", HOME)
        assert http.post(url, headers=headers, content=body).json()["sender_flagged"] is True

    # The dashboards count only the records that matched.
    builds = _builds(server)
    assert builds.get("41000") == 1 and builds.get("41002") == 1 and builds.get("41003") == 1
    assert builds.get("41005") == 1
    assert "41001" not in builds and "41004" not in builds and "41006" not in builds
    row = _senders(server, "clearlinux")[machine]
    assert row["flagged"] == 3 and row["refused"] == 0


def test_clearlinux_bulk_items_of_a_spoofed_machine_id_are_flagged(start: Start) -> None:
    server = start(DOWNLINK_SENDER_BINDING="clearlinux")
    machine = secrets.token_hex(16)
    headers, body = _record(machine, "42000", HOME)
    assert httpx.post(server.url + "/v2/collector", headers=headers, content=body
                      ).status_code == 201
    items = [v3_record(machine_id=machine, build="42001"),
             v3_record(machine_id=machine, build="42002")]
    answer = httpx.post(server.url + "/api/v1/records/bulk", json=items,
                        headers=_from(ELSEWHERE, **{"X-Telemetry-TID": TID}), timeout=30)
    assert answer.status_code == 200, answer.text
    for result in answer.json()["results"]:
        assert result["status"] == 201
        stored = httpx.get(f"{server.url}/api/records/{result['id']}").json()
        assert stored["sender_flagged"] is True
    builds = _builds(server)
    assert builds.get("42000") == 1 and "42001" not in builds and "42002" not in builds
    assert _senders(server, "clearlinux")[machine]["flagged"] == 1  # one post
    # Many new machine ids in one post: all bound at once, none flagged.
    many = [v3_record(build="42003") for _ in range(300)]
    answer = httpx.post(server.url + "/api/v1/records/bulk", json=many,
                        headers=_from(HOME, **{"X-Telemetry-TID": TID}), timeout=60)
    assert answer.json()["accepted"] == 300
    assert _builds(server).get("42003") == 300
    bound = _senders(server, "clearlinux")
    assert all(bound[r["machine_id"]]["network"] == "198.51.100.0/24" for r in many)


def _flags(server: LiveServer, machine: str, address: str, times: int,
           **extra: str) -> list[bool]:
    """Post ``times`` records of ``machine`` from ``address``, each on a new connection
    (so that they land on every worker); whether each was stored flagged."""
    flags = []
    for _ in range(times):
        headers, body = _record(machine, "45000", address, **extra)
        answer = httpx.post(server.url + "/v2/collector", headers=headers, content=body,
                            timeout=30)
        assert answer.status_code == 201, answer.text
        flags.append(bool(answer.json().get("sender_flagged")))
    return flags


def _cli(db_url: str, *args: str) -> str:
    result = CliRunner().invoke(cli, ["senders", *args], env={"DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    return str(result.output)


def test_every_worker_honours_bindings_and_their_changes_at_once(
    start: Start, db_url: str
) -> None:
    """Bindings made by one worker hold on the other; concurrent first posts of one id
    bind it once; a re-bind, a forget and a first presented secret reach every worker's
    cache within two intervals of the log's reads (two seconds), not when a cache entry
    expires."""
    server = start(workers=2, DOWNLINK_SENDER_BINDING="clearlinux")
    machine = secrets.token_hex(16)
    headers, body = _record(machine, "45000", HOME)

    async def first_posts() -> list[httpx.Response]:
        clients = [httpx.AsyncClient(timeout=30) for _ in range(12)]
        try:
            return await asyncio.gather(*(
                c.post(server.url + "/v2/collector", headers=headers, content=body)
                for c in clients))
        finally:
            for c in clients:
                await c.aclose()

    answers = asyncio.run(first_posts())
    assert [a.status_code for a in answers] == [201] * 12
    secrets_given = [a.headers[SECRET] for a in answers if SECRET in a.headers]
    assert len(secrets_given) == 1  # bound once, whichever worker posted first
    assert not any(a.json().get("sender_flagged") for a in answers)
    assert _flags(server, machine, HOME_TOO, 16) == [False] * 16  # every cache has it
    assert _flags(server, machine, ELSEWHERE, 8) == [True] * 8

    # The real sender moved: re-bound there, every worker follows within a second.
    _cli(db_url, "rebind", "clearlinux", machine, "--network", "203.0.113.0/24")
    time.sleep(2 * CHANGES_POLL_SECONDS + 0.5)
    assert _flags(server, machine, HOME, 16) == [True] * 16
    assert _flags(server, machine, ELSEWHERE, 8) == [False] * 8

    # Forgotten: its next post binds it again, wherever from.
    _cli(db_url, "forget", "clearlinux", machine)
    time.sleep(2 * CHANGES_POLL_SECONDS + 0.5)
    headers, body = _record(machine, "45000", HOME)
    again = httpx.post(server.url + "/v2/collector", headers=headers, content=body, timeout=30)
    assert again.status_code == 201 and SECRET in again.headers
    assert _flags(server, machine, HOME_TOO, 8) == [False] * 8
    assert _flags(server, machine, ELSEWHERE, 8) == [True] * 8

    # It presents its secret once, on one worker: from then on every worker requires it.
    assert _flags(server, machine, ELSEWHERE, 1, **{SECRET: again.headers[SECRET]}) == [False]
    time.sleep(2 * CHANGES_POLL_SECONDS + 0.5)
    assert _flags(server, machine, HOME, 16) == [True] * 16
    row = _senders(server, "clearlinux")[machine]
    assert row["secret_seen"] is True and row["flagged"] == 8 + 16


async def _node(server: LiveServer, address: str, peer: str, count: int) -> None:
    url = server.url.replace("http://", "ws://", 1) + "/"
    async with connect(url, additional_headers={"X-Forwarded-For": address}) as ws:
        await send_frames(ws, [connected(1, peer)] + [frame(1, i) for i in range(count)])
        answer = await flush(ws)
        assert answer["stored"] == count + 1


def test_substrate_flags_a_peer_id_claimed_from_elsewhere(start: Start) -> None:
    server = start(DOWNLINK_SENDER_BINDING="substrate")
    peer = "12D3KooW" + secrets.token_hex(16)
    asyncio.run(_node(server, HOME, peer, 3))
    asyncio.run(_node(server, ELSEWHERE, peer, 5))
    asyncio.run(_node(server, HOME_TOO, peer, 1))
    wait_caught_up(server.url)  # the /nodes rows are written by a consumer, after the ack

    stats = httpx.get(f"{server.url}/nodes/log_stats", params={"peer_id": peer}).json()
    counts = {s["log_type"]: s["qty"] for s in stats}
    assert counts == {"system.connected": 2, "system.interval": 4}
    logs = httpx.get(f"{server.url}/nodes/logs", params={"peer_id": peer}).json()
    assert {entry["ip_addr"].split(":")[0] for entry in logs} == {HOME, HOME_TOO}
    # The records API still has them, flagged.
    recs = httpx.get(f"{server.url}/api/records",
                     params={"source": "substrate", "limit": 100}).json()
    items = recs["records"] if isinstance(recs, dict) else recs
    flagged = [r for r in items if r.get("sender_flagged")]
    assert len(flagged) == 6 and {r["machine_id"] for r in flagged} == {peer}
    # The spoofing connection does not take the peer id on /nodes.
    nodes = [n for n in httpx.get(server.url + "/nodes").json() if n.get("peer_id") == peer]
    assert len(nodes) == 1 and nodes[0]["ip_addr"].split(":")[0] == HOME_TOO
    row = _senders(server, "substrate")[peer]
    assert row["flagged"] == 1 and row["network"] == "198.51.100.0/24"
    assert "203.0.113.0/24" in row["last_mismatch_reason"]


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_per_sender_rate_limit_answers_429_with_retry_after(start: Start) -> None:
    server = start(DOWNLINK_SENDER_RATE_LIMIT="0.01", DOWNLINK_SENDER_RATE_BURST="2")
    uid = "uid-" + secrets.token_hex(6)
    url = server.url + "/api/v1/installation_structure/"
    machine = secrets.token_hex(16)
    with httpx.Client(timeout=30) as http:
        codes = [http.post(url, json=_structure(uid, 1)).status_code for _ in range(2)]
        assert codes == [201, 200]
        limited = http.post(url, json=_structure(uid, 1))
        assert limited.status_code == 429
        assert limited.json()["status"] == "error"
        assert int(limited.headers["Retry-After"]) >= 1
        # Another uid from the same address is not limited.
        assert http.post(url, json=_structure(uid + "-2", 1)).status_code == 201
        # Clear Linux: per machine id, in its own error shape.
        for _ in range(2):
            headers, body = _record(machine, "43000", HOME)
            assert http.post(server.url + "/v2/collector", headers=headers,
                             content=body).status_code == 201
        headers, body = _record(machine, "43000", HOME)
        limited = http.post(server.url + "/v2/collector", headers=headers, content=body)
        assert limited.status_code == 429 and "message" in limited.json()
        assert int(limited.headers["Retry-After"]) >= 1


def test_senders_page_lists_refused_and_flagged_senders_behind_the_token(start: Start) -> None:
    server = start(DOWNLINK_SENDER_BINDING="fuelstats,clearlinux",
                   DOWNLINK_API_TOKENS="sekrit")
    auth = {"Authorization": "Bearer sekrit"}
    uid = "uid-" + secrets.token_hex(6)
    url = server.url + "/api/v1/installation_structure/"
    with httpx.Client(timeout=30) as http:
        assert http.post(url, json=_structure(uid, 1), headers=_from(HOME)).status_code == 201
        assert http.post(url, json=_structure(uid, 1), headers=_from(ELSEWHERE)).status_code == 403
        quiet = "uid-" + secrets.token_hex(6)
        assert http.post(url, json=_structure(quiet, 1), headers=_from(HOME)).status_code == 201

        assert http.get(server.url + "/senders").status_code == 401
        assert http.get(server.url + "/senders.json").status_code == 401
        doc = http.get(server.url + "/senders.json", headers=auth).json()
        assert [s["sender_id"] for s in doc["senders"]] == [uid]
        rules = {s["source"]: s for s in doc["sources"]}
        assert rules["fuelstats"]["binding"] and rules["fuelstats"]["on_mismatch"] == "refuse"
        assert rules["clearlinux"]["on_mismatch"] == "flag"
        assert rules["substrate"]["binding"] is False
        assert rules["fuelstats"]["bound"] == 2
        page = http.get(server.url + "/senders", headers=auth)
        assert page.status_code == 200 and uid in page.text and quiet not in page.text
        assert "203.0.113.9" in page.text
        bad = http.get(server.url + "/senders.json?source=nope", headers=auth)
        assert bad.status_code == 400 and "source must be one of" in bad.json()["message"]
        bad_page = http.get(server.url + "/senders?source=nope", headers=auth)
        assert bad_page.status_code == 400 and "source must be one of" in bad_page.text
    assert json.dumps(doc).count("secret_hash") == 0


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_binding_an_unknown_source_stops_the_server(db_url: str, tmp_path: Path) -> None:
    server = LiveServer(db_url, env={"DOWNLINK_SENDER_BINDING": "ooni"},
                        log=tmp_path / "server.log")
    with pytest.raises(RuntimeError):
        server.start(timeout=15)
    assert "names no source with sender ids" in (tmp_path / "server.log").read_text()


def test_bindings_out_of_reach_answer_503_never_500(start: Start, db_url: str) -> None:
    server = start(DOWNLINK_SENDER_BINDING="fuelstats,clearlinux")
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE senders"))
    finally:
        engine.dispose()
    headers, body = _record(secrets.token_hex(16), "44000", HOME)
    answer = httpx.post(server.url + "/v2/collector", headers=headers, content=body, timeout=30)
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    assert "retry later" in answer.json()["message"]
    fuel = httpx.post(server.url + "/api/v1/installation_structure/",
                      json=_structure("uid-" + secrets.token_hex(6), 1), headers=_from(HOME),
                      timeout=30)
    assert fuel.status_code == 503 and fuel.json()["status"] == "error"
