"""The JSON API over substrate data, fed through the websocket endpoint in-process."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from downlink.testing.consumers import wait_caught_up
from tests.sources.substrate.client import connected, frame

TS1 = "2021-06-23T10:00:00+00:00"
TS2 = "2021-06-23T11:00:00+00:00"


def _feed(client: TestClient, frames: list[dict[str, Any]], path: str = "/") -> dict[str, Any]:
    with client.websocket_connect(path) as ws:
        for f in frames:
            ws.send_bytes(json.dumps(f).encode())
        ws.send_text(json.dumps({"downlink_flush": "done"}))
        answer: dict[str, Any] = ws.receive_json()
    assert answer["downlink_flushed"] == "done"
    wait_caught_up(client)  # the connection rows follow the records after the ack
    return answer


def _state(node: int, peer: str, ts: str, peers: dict[str, tuple[int, bool]]) -> dict[str, Any]:
    nodes = {p: {"reputation": r, "connected": c} for p, (r, c) in peers.items()}
    return {
        "id": node,
        "ts": ts,
        "payload": {
            "msg": "system.network_state",
            "state": {"peerId": peer, "peerset": {"nodes": nodes, "reserved_only": False}},
        },
    }


def test_fixture_messages_are_listed_per_node(
    client: TestClient, v1_frames: list[dict[str, Any]], v2_frames: list[dict[str, Any]]
) -> None:
    answer = _feed(client, v1_frames + v2_frames)
    assert answer["stored"] == len(v1_frames) + len(v2_frames)
    nodes = client.get("/nodes").json()
    alice = next(f for f in v1_frames if f["msg"] == "system.connected")
    v2_peer = next(f for f in v2_frames if f["payload"]["msg"] == "system.connected")
    by_peer = {n["peer_id"]: n for n in nodes}
    assert by_peer[alice["network_id"]]["name"] == alice["name"]
    assert by_peer[alice["network_id"]]["node"] == "0"
    v2 = by_peer[v2_peer["payload"]["network_id"]]
    assert (v2["node"], v2["chain"], v2["authority"]) == ("1", "Tetcoin", True)

    stats = client.get("/nodes/log_stats", params={"peer_id": v2["peer_id"]}).json()
    counted = {s["log_type"]: s["qty"] for s in stats}
    assert counted["system.interval"] == 2
    assert sum(counted.values()) == len(v2_frames)


def test_logs_filters_and_target_without_msg(client: TestClient) -> None:
    frames = [
        connected(1, "PeerA"),
        frame(1, 1, "tracing.profiling", target="pallet_balances", name="transfer", time=5),
        frame(1, 2, "tracing.profiling", target="sc_service", name="import", time=6),
        frame(1, 3, "block.import"),
    ]
    frames[3]["ts"] = TS2
    _feed(client, frames)
    logs = client.get("/nodes/logs", params={"peer_id": "PeerA"}).json()
    assert [entry["msg"] for entry in logs][0] == "block.import"  # newest node time first
    assert len(logs) == 4
    only = client.get("/nodes/logs", params={"peer_id": "PeerA", "target": "sc_service"}).json()
    assert [entry["logs"]["name"] for entry in only] == ["import"]
    typed = client.get(
        "/nodes/logs", params={"peer_id": "PeerA", "msg": "tracing.profiling", "limit": "1"}
    ).json()
    assert len(typed) == 1 and typed[0]["msg"] == "tracing.profiling"
    window = client.get(
        "/nodes/logs",
        params={"peer_id": "PeerA", "start_time": "2021-06-23T10:30:00Z", "end_time": "1e10"},
    ).json()
    assert [entry["msg"] for entry in window] == ["block.import"]
    assert window[0]["received_at"] > window[0]["created_at"]
    assert window[0]["ip_addr"]


def test_bad_parameters_are_400_with_a_reason(client: TestClient) -> None:
    cases = {
        "/nodes/logs": "peer_id is required",
        "/nodes/log_stats": "peer_id is required",
        "/nodes/logs?peer_id=a&limit=abc": "limit",
        "/nodes/logs?peer_id=a&limit=0": "limit",
        "/nodes/logs?peer_id=a&limit=-5": "limit",
        "/nodes/logs?peer_id=a&start_time=yesterday": "start_time",
        "/nodes/logs?peer_id=a&start_time=10&end_time=5": "end_time",
        "/reputation?max_age_s=x": "max_age_s",
        "/reputation/logged?limit=1e3": "limit",
        "/reputation/PeerA?end_time=nan": "end_time",
        "/benchmarks?limit=": "limit",
    }
    for url, reason in cases.items():
        response = client.get(url)
        assert response.status_code == 400, url
        assert reason in response.json()["message"], url


def test_reputation_reports_the_requested_peer(client: TestClient) -> None:
    # The reference returned an arbitrary peer's value of the same snapshot (-500 here).
    _feed(
        client,
        [
            connected(1, "PA"),
            _state(1, "PA", TS1, {"PB": (100, True), "PC": (-500, False)}),
            connected(2, "PB"),
            _state(2, "PB", TS2, {"PA": (50, True), "PC": (7, True), "PX": (1, False)}),
        ],
    )
    pb = client.get("/reputation/PB").json()
    assert pb == [{"reporting_peer": "PA", "reputation": 100, "connected": True, "ts": pb[0]["ts"]}]
    pc = client.get("/reputation/PC").json()
    assert [(r["reporting_peer"], r["reputation"]) for r in pc] == [("PB", 7), ("PA", -500)]
    assert client.get("/reputation/PC", params={"limit": "1"}).json()[0]["reporting_peer"] == "PB"
    assert client.get("/reputation/PC", params={"end_time": TS2}).json()[0]["reputation"] == -500

    everything = {r["reporting_peer"]: r for r in client.get("/reputation").json()}
    assert everything["PB"]["remote_peer"] == ["PA", "PC", "PX"]
    assert everything["PB"]["reputation"] == [50, 7, 1]
    logged = {r["reporting_peer"]: r for r in client.get("/reputation/logged").json()}
    assert logged["PB"]["remote_peer"] == ["PA"]
    assert logged["PA"]["remote_peer"] == ["PB"]


def test_reputation_from_a_real_v1_network_state(
    client: TestClient, v1_live_frames: list[dict[str, Any]]
) -> None:
    state = next(f for f in v1_live_frames if f["msg"] == "system.network_state")
    _feed(client, [state])
    me = state["state"]["peerId"]
    peers = state["state"]["peerset"]["nodes"]
    ours = client.get("/reputation").json()
    assert [r["reporting_peer"] for r in ours] == [me]
    assert len(ours[0]["remote_peer"]) == len(peers)
    other, value = next(iter(peers.items()))
    history = client.get(f"/reputation/{other}").json()
    assert history[0]["reputation"] == value["reputation"]


def test_reputation_max_age_is_on_the_server_clock(client: TestClient) -> None:
    _feed(client, [connected(1, "PA"), _state(1, "PA", TS1, {"PB": (1, True)})])
    assert len(client.get("/reputation", params={"max_age_s": "60"}).json()) == 1


def test_stats_db_lists_tables(client: TestClient) -> None:
    stats = client.get("/stats/db").json()
    names = {s["relation"].split(".")[-1] for s in stats}
    assert {"records", "node_connections", "benchmarks"} <= names
    assert all(isinstance(s["bytes"], int) and s["size"] for s in stats)


def test_benchmarks_post_and_list(client: TestClient) -> None:
    setup = {"tetcore": {"peerId": "PA"}, "txs": 1000}
    created = client.post("/benchmarks", json={"setup": setup})
    assert created.status_code == 201
    body = created.json()
    assert body["setup"] == setup and body["id"] >= 1
    client.post("/benchmarks", json={"setup": {"n": 2}})
    listed = client.get("/benchmarks").json()
    assert [b["setup"] for b in listed] == [{"n": 2}, setup]
    assert len(client.get("/benchmarks", params={"limit": "1"}).json()) == 1
    for bad in (b"nope", b"[]", b'{"x": 1}', b'{"setup": 3}'):
        response = client.post("/benchmarks", content=bad)
        assert response.status_code == 400, bad
        assert response.json()["message"]
    huge = client.post("/benchmarks", json={"setup": {"x": "y" * 70000}})
    assert huge.status_code == 413


def test_unidentified_open_connections_are_listed_one_by_one(client: TestClient) -> None:
    from downlink.sources.substrate.queries import recent_message_types

    with client.websocket_connect("/") as first, client.websocket_connect("/audit") as second:
        for ws in (first, second):
            ws.send_text(json.dumps(frame(1, 1, "block.import")))
            ws.send_text(json.dumps({"downlink_flush": 1}))
            assert ws.receive_json()["stored"] == 1
        wait_caught_up(client)
        listed = [n for n in client.get("/nodes").json() if n["peer_id"] is None]
        assert len(listed) == 2  # the reference folded them into one null entry
        assert all(n["online"] for n in listed)
        assert sorted(n["audit"] for n in listed) == [False, True]
    store = client.app.state.store  # type: ignore[attr-defined]
    types = store.run(recent_message_types, 0.0)
    assert types == [
        {
            "peer_id": "",
            "msg": "block.import",
            "count": 2,
            "last_received": types[0]["last_received"],
        }
    ]
