"""Real websocket nodes against a real ``downlink serve``, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from downlink.testing.consumers import wait_caught_up
from tests.sources.substrate.client import connected, flush, frame, metric, send_frames
from tests.sources.substrate.conftest import LiveFactory, count_substrate, ws_url

pytestmark = pytest.mark.slow


def _wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


async def _closed_code(ws: ClientConnection, timeout: float = 5.0) -> int | None:
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


def test_many_concurrent_nodes_with_the_fixture_messages(
    live_with: LiveFactory,
    db_url: str,
    v1_frames: list[dict[str, Any]],
    v1_live_frames: list[dict[str, Any]],
    v2_frames: list[dict[str, Any]],
) -> None:
    server = live_with()
    nodes, extra = 40, 50

    async def node(i: int) -> int:
        peer = f"12D3KooWNode{i:04d}"
        frames = [connected(1, peer, name=f"n{i}")] + v2_frames[1:]
        frames += [frame(1, k) for k in range(extra)]
        async with connect(ws_url(server), max_size=None) as ws:
            if i % 2:
                await send_frames(ws, v1_frames + v1_live_frames)  # node id 0 on this socket
            else:
                for f in frames:
                    await ws.send(json.dumps(f))  # text frames work too
            await send_frames(ws, frames if i % 2 else [])
            answer = await flush(ws, f"n{i}")
        return int(answer["stored"])

    async def main() -> list[int]:
        return await asyncio.gather(*(node(i) for i in range(nodes)))

    stored = asyncio.run(main())
    per_v2_node = len(v2_frames) + extra
    per_v1_node = len(v1_frames) + len(v1_live_frames)
    expected = [per_v2_node + (per_v1_node if i % 2 else 0) for i in range(nodes)]
    assert stored == expected
    assert count_substrate(db_url) == sum(expected)
    wait_caught_up(server.url)  # the connection rows follow the records after the ack
    listed = {n["peer_id"]: n for n in httpx.get(server.url + "/nodes").json()}
    for i in range(nodes):
        assert listed[f"12D3KooWNode{i:04d}"]["name"] == f"n{i}"
    _wait_for(lambda: metric(server, "downlink_ws_connections", endpoint="/") == 0)
    assert metric(server, "downlink_ws_connections_opened_total", endpoint="/") == nodes
    assert metric(server, "downlink_records_accepted_total", source="substrate") == sum(expected)
    states_v1 = sum(f["msg"] == "system.network_state" for f in v1_frames + v1_live_frames)
    states = nodes + (nodes // 2) * states_v1  # one in the V2 set, more in the V1 captures
    assert metric(server, "downlink_ws_messages_total", msg="system.network_state") == states
    assert metric(server, "downlink_database_bytes") > 0


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_node_that_stops_answering_pings_is_dropped(live_with: LiveFactory, db_url: str) -> None:
    server = live_with({
        "DOWNLINK_SUBSTRATE_WS_PING_INTERVAL_S": "0.2",
        "DOWNLINK_SUBSTRATE_WS_PONG_TIMEOUT_S": "0.5",
    })

    async def main() -> None:
        async with (
            connect(ws_url(server), ping_interval=None, close_timeout=0.5) as hung,
            connect(ws_url(server), ping_interval=None, close_timeout=0.5) as healthy,
        ):
            await send_frames(hung, [connected(1, "Hung")] + [frame(1, k) for k in range(5)])
            assert (await flush(hung))["stored"] == 6
            hung.transport.pause_reading()  # the node no longer reads, so never pongs
            for k in range(15):  # the healthy node keeps streaming (and answering pings)
                await send_frames(healthy, [frame(7, k)])
                await asyncio.sleep(0.1)
            _wait_for(lambda: metric(server, "downlink_ws_connections", endpoint="/") == 1)
            assert (await flush(healthy))["stored"] == 15

    asyncio.run(main())
    wait_caught_up(server.url)  # the connection rows follow the records after the ack
    nodes = {n["peer_id"]: n for n in httpx.get(server.url + "/nodes").json()}
    assert nodes["Hung"]["disconnected_at"] is not None
    assert nodes["Hung"]["online"] is False
    assert count_substrate(db_url) == 21


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_by_default_data_is_liveness_and_silent_nodes_time_out(
    live_with: LiveFactory, db_url: str
) -> None:
    # Modern nodes never read their socket, so they never pong: with the default
    # DOWNLINK_SUBSTRATE_WS_PONG_TIMEOUT_S=0 they stay as long as they send; a silent one
    # is dropped.
    server = live_with({
        "DOWNLINK_SUBSTRATE_WS_PING_INTERVAL_S": "0.2",
        "DOWNLINK_SUBSTRATE_WS_IDLE_TIMEOUT_S": "1",
    })

    async def main() -> None:
        async with (
            connect(ws_url(server), ping_interval=None, close_timeout=0.5) as talker,
            connect(ws_url(server), ping_interval=None, close_timeout=0.5) as silent,
        ):
            silent.transport.pause_reading()
            talker.transport.pause_reading()
            for k in range(25):
                await send_frames(talker, [frame(1, k)])
                await asyncio.sleep(0.1)
            _wait_for(
                lambda: metric(server, "downlink_ws_connections_closed_total", reason="idle") == 1
            )
            assert metric(server, "downlink_ws_connections", endpoint="/") == 1
            talker.transport.resume_reading()
            assert (await flush(talker))["stored"] == 25

    asyncio.run(main())
    assert count_substrate(db_url) == 25


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_oversized_frame_closes_only_that_node(
    live_with: LiveFactory, db_url: str, v1_live_frames: list[dict[str, Any]]
) -> None:
    server = live_with({"DOWNLINK_SUBSTRATE_WS_MAX_FRAME_BYTES": "100000"})
    big = next(f for f in v1_live_frames if f["msg"] == "system.network_state")
    assert len(json.dumps(big)) > 100000

    async def main() -> None:
        async with (
            connect(ws_url(server), max_size=None) as sender,
            connect(ws_url(server)) as bystander,
        ):
            await send_frames(sender, [frame(1, 1)])
            assert (await flush(sender))["stored"] == 1
            await send_frames(bystander, [frame(1, 2)])
            await sender.send(json.dumps(big).encode())
            assert await _closed_code(sender) == 1009
            await send_frames(bystander, [frame(1, 3)])
            assert (await flush(bystander))["stored"] == 2

    asyncio.run(main())
    assert count_substrate(db_url) == 3
    assert metric(server, "downlink_ws_malformed_messages_total", reason="too_large") == 1
    assert metric(server, "downlink_ws_connections_closed_total", reason="too_large") == 1


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_garbage_frames_are_counted_and_the_connection_survives(
    live_with: LiveFactory, db_url: str
) -> None:
    server = live_with()
    garbage: list[str | bytes] = [
        "not json",
        b"\xff\xfe\x00",
        "[1, 2, 3]",
        '{"msg": "no ts"}',
        '{"msg": "x", "ts": "last tuesday"}',
        "",
        b"{",
        '{"id": [], "ts": "2021-01-13T12:38:25Z", "payload": {}}',
    ]

    async def main() -> None:
        async with connect(ws_url(server)) as noisy, connect(ws_url(server)) as clean:
            for k, junk in enumerate(garbage):
                await noisy.send(junk)
                await send_frames(noisy, [frame(1, k)])
                await send_frames(clean, [frame(1, k)])
            assert (await flush(noisy))["stored"] == len(garbage)
            assert (await flush(clean))["stored"] == len(garbage)

    asyncio.run(main())
    assert count_substrate(db_url) == 2 * len(garbage)
    reasons = {
        "invalid_json": 3,
        "invalid_utf8": 1,
        "not_object": 1,
        "missing_ts": 1,
        "bad_ts": 1,
        "bad_id": 1,
    }
    for reason, n in reasons.items():
        assert metric(server, "downlink_ws_malformed_messages_total", reason=reason) == n
        assert (
            metric(server, "downlink_records_rejected_total", source="substrate", reason=reason)
            == n
        )


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_byte_rate_limit_cuts_a_flooding_node(live_with: LiveFactory, db_url: str) -> None:
    server = live_with({
        "DOWNLINK_SUBSTRATE_WS_RATE_LIMIT_BYTES": "1000",
        "DOWNLINK_SUBSTRATE_WS_RATE_WINDOW_S": "10",
    })

    def padded(k: int) -> bytes:
        base = json.dumps(frame(1, k, pad=""))
        return json.dumps(frame(1, k, pad="x" * (1000 - len(base)))).encode()

    assert len(padded(0)) == 1000
    flood = 30

    async def main() -> None:
        async with connect(ws_url(server)) as ws:
            for k in range(9):  # 9,000 B of a 10,000 B budget (1,000 B/s over 10 s)
                await ws.send(padded(k))
            assert (await flush(ws))["stored"] == 9
            for k in range(9, 9 + flood):  # far beyond what the budget refills meanwhile
                await ws.send(padded(k))
            assert await _closed_code(ws) == 1008

    asyncio.run(main())
    stored = count_substrate(db_url)
    assert 9 <= stored < 9 + flood  # what came within the budget is kept, the rest refused
    assert metric(server, "downlink_ws_malformed_messages_total", reason="rate_limit") == 1
    assert metric(server, "downlink_ws_connections_closed_total", reason="rate_limit") == 1


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_allow_list_refuses_other_networks(live_with: LiveFactory) -> None:
    server = live_with({"DOWNLINK_SUBSTRATE_WS_ALLOW_NETWORKS": "10.0.0.0/8,192.168.0.0/16"})

    async def main() -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(ws_url(server)):
                pass
        assert info.value.response.status_code == 403

    asyncio.run(main())
    assert metric(server, "downlink_ws_connections_refused_total", reason="network") == 1
    assert httpx.get(server.url + "/nodes").status_code == 200  # HTTP is not restricted


def test_purge_while_ingesting_keeps_audit_and_loses_nothing_else(
    live_with: LiveFactory, db_url: str
) -> None:
    server = live_with(
        {
            "DOWNLINK_SUBSTRATE_RETENTION_HOURS": str(1 / 3600),  # one second
            "DOWNLINK_PURGE_INTERVAL_S": "0.2",
            "DOWNLINK_SUBSTRATE_PURGE_BATCH": "50",
        }
    )
    rounds, per_round = 12, 40

    async def node(path: str, i: int) -> int:
        acked = 0
        async with connect(ws_url(server, path)) as ws:
            await send_frames(ws, [connected(1, f"{path}{i}")])
            for r in range(rounds):
                await send_frames(ws, [frame(1, r * per_round + k) for k in range(per_round)])
                acked = int((await flush(ws, r))["stored"])
                await asyncio.sleep(0.2)
        return acked

    async def main() -> list[int]:
        paths = ["/"] * 4 + ["/audit"] * 2
        return await asyncio.gather(*(node(p, i) for i, p in enumerate(paths)))

    acked = asyncio.run(main())
    assert acked == [1 + rounds * per_round] * 6
    sent_normal = 4 * (1 + rounds * per_round)
    purged_during = metric(server, "downlink_purged_records_total", source="substrate")
    assert purged_during > 0  # the purge really ran while nodes were sending
    _wait_for(lambda: count_substrate(db_url, audit=False) == 0)
    assert metric(server, "downlink_purged_records_total", source="substrate") == sent_normal
    assert count_substrate(db_url, audit=True) == 2 * (1 + rounds * per_round)
    assert metric(server, "downlink_writer_errors_total") == 0
    assert metric(server, "downlink_purge_runs_total", outcome="error") == 0


def _heights(db_url: str) -> set[int]:
    from sqlalchemy import create_engine, select

    from downlink.store.tables import records

    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            payloads = conn.execute(
                select(records.c.payload).where(records.c.classification == "substrate/x")
            ).scalars()
            return {int(json.loads(p)["height"]) for p in payloads}
    finally:
        engine.dispose()


def test_sigkill_loses_no_acked_message(live_with: LiveFactory, db_url: str) -> None:
    server = live_with()

    async def before_crash() -> None:
        async with connect(ws_url(server)) as ws:
            await send_frames(ws, [frame(1, k, "x") for k in range(300)])
            assert (await flush(ws))["stored"] == 300
            await send_frames(ws, [frame(1, k, "x") for k in range(300, 400)])
            server.kill()
            await _closed_code(ws)

    asyncio.run(before_crash())
    assert set(range(300)) <= _heights(db_url)  # acked ones all there; later ones may be
    restarted = live_with()

    async def after_restart() -> None:
        async with connect(ws_url(restarted)) as ws:
            await send_frames(ws, [frame(1, k, "x") for k in range(400, 450)])
            assert (await flush(ws))["stored"] == 50

    asyncio.run(after_restart())
    assert set(range(300)) | set(range(400, 450)) <= _heights(db_url)


def test_graceful_stop_stores_everything_received(live_with: LiveFactory, db_url: str) -> None:
    server = live_with()
    sent = 2000

    async def main() -> None:
        async with connect(ws_url(server)) as ws:
            await send_frames(ws, [frame(1, k, "x") for k in range(sent)])
            _wait_for(
                lambda: (
                    metric(server, "downlink_records_received_total", source="substrate") == sent
                )
            )
            server.stop()  # SIGTERM while rows may still sit in the connection's buffer
            assert await _closed_code(ws) == 1012

    asyncio.run(main())
    assert _heights(db_url) == set(range(sent))


def test_full_writer_queue_applies_backpressure_and_drops_nothing(
    live_with: LiveFactory, db_url: str
) -> None:
    server = live_with(
        {
            "DOWNLINK_BATCH_MAX": "16",
            "DOWNLINK_QUEUE_MAX": "16",
            "DOWNLINK_SUBSTRATE_WS_BUFFER_MAX": "32",
        }
    )
    nodes, per_node = 20, 300

    async def node(i: int) -> int:
        async with connect(ws_url(server)) as ws:
            await send_frames(ws, [frame(1, k) for k in range(per_node)])
            return int((await flush(ws, i))["stored"])

    async def main() -> list[int]:
        return await asyncio.gather(*(node(i) for i in range(nodes)))

    assert asyncio.run(main()) == [per_node] * nodes
    assert count_substrate(db_url) == nodes * per_node
    assert metric(server, "downlink_ws_backpressure_waits_total") > 0
    assert metric(server, "downlink_records_rejected_total", source="substrate") == 0
