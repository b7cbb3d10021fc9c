"""Node connection rows are derived after the ack, from the records alone.

``substrate_connections`` follows ``records``; deleting every connection row and
running ``downlink reprocess --source substrate`` gives the same rows (and the same
``/nodes``), as does replaying only part of a connection's days, on both databases.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
from click.testing import CliRunner
from sqlalchemy import delete, select
from websockets.asyncio.client import connect

from downlink.cli.main import cli
from downlink.settings import Settings
from downlink.sources.substrate.connections import NAME, mark_disconnected
from downlink.sources.substrate.tables import node_connections
from downlink.sources.substrate.wire import NodeMessage, parse_frame, to_row
from downlink.store.database import Store
from downlink.store.engine import make_engine
from downlink.testing.consumers import catch_up, wait_caught_up
from downlink.testing.live import LiveServer
from tests.sources.substrate.client import connected, flush, frame, send_frames
from tests.sources.substrate.conftest import ws_url

DAY = 86400.0


def _rows(conn: Any) -> list[dict[str, Any]]:
    """Every connection row, without its id (a rebuilt row gets a new one)."""
    found = conn.execute(select(node_connections).order_by("connection", "node")).mappings()
    return [{k: v for k, v in r.items() if k != "id"} for r in found]


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


def _reprocess(db_url: str, first: float, last: float) -> str:
    result = CliRunner().invoke(
        cli,
        ["reprocess", "--source", "substrate", "--since", _day(first), "--until", _day(last)],
        env={"DATABASE_URL": db_url},
    )
    assert result.exit_code == 0, result.output
    assert f"through {NAME}" in result.output
    return result.output


def _listed_of(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(({k: v for k, v in n.items() if k != "id"} for n in nodes),
                  key=lambda n: (n["connection"], n["node"]))


def _listed(server: LiveServer) -> list[dict[str, Any]]:
    return _listed_of(httpx.get(server.url + "/nodes", timeout=10).json())


def _table(db_url: str) -> list[dict[str, Any]]:
    engine = make_engine(Settings(database_url=db_url))
    try:
        with engine.connect() as conn:
            return _rows(conn)
    finally:
        engine.dispose()


def test_delete_connection_rows_then_reprocess_restores_them(
    live: LiveServer, db_url: str, v1_frames: list[dict[str, Any]],
    v2_frames: list[dict[str, Any]],
) -> None:
    state = {"id": 3, "ts": "2021-06-23T10:15:31Z",
             "payload": {"msg": "system.network_state", "state": {"peerId": "PeerOnlyState"}}}
    feeds = [
        ("/", v1_frames + v2_frames),
        ("/audit", [connected(1, "PeerAudit", "auditor"), frame(1, 1), frame(2, 2)]),
        ("/", [state, frame(3, 4), connected(3, "PeerLater", "late"), frame(3, 5)]),
    ]

    async def feed() -> None:
        for path, frames in feeds:
            async with connect(ws_url(live, path), max_size=None) as ws:
                await send_frames(ws, frames)
                assert (await flush(ws))["stored"] == len(frames)

    asyncio.run(feed())
    wait_caught_up(live.url)
    deadline = time.monotonic() + 30
    # Every connection closed; its close is written as the handler ends.
    before = _table(db_url)
    while any(r["disconnected_at"] is None for r in before):
        assert time.monotonic() < deadline, before
        time.sleep(0.05)
        before = _table(db_url)
    nodes = _listed(live)
    assert len(before) == 5
    late = next(r for r in before if r["peer_id"] == "PeerOnlyState")
    # The peer id it learnt first stays; the later system.connected describes it.
    assert (late["name"], late["messages"]) == ("late", 4)
    named = {r["peer_id"]: r for r in before}
    assert named["PeerAudit"]["audit"] and named["PeerAudit"]["chain"] == "Tetcoin"
    assert named["PeerAudit"]["info"] == {"config": ""}

    engine = make_engine(Settings(database_url=db_url), writer=True)
    try:
        with engine.begin() as conn:
            conn.execute(delete(node_connections))
    finally:
        engine.dispose()
    assert _listed(live) == []
    now = time.time()
    _reprocess(db_url, now, now)
    assert _table(db_url) == before
    # The same nodes, but for the rows' ids (a rebuilt row gets a new one).
    assert _listed(live) == nodes
    _reprocess(db_url, now, now)  # twice: the same again
    assert _table(db_url) == before


def _message(msg: str, **body: Any) -> NodeMessage:
    parsed = parse_frame(json.dumps({"id": 1, "ts": "2021-06-23T10:15:30Z",
                                     "payload": {"msg": msg, **body}}))
    assert isinstance(parsed, NodeMessage)
    return parsed


def test_a_replay_of_some_days_of_a_connection_gives_the_same_row(
    store: Store, db_url: str
) -> None:
    # One connection seen over three days: a reprocess of the middle day alone (or of
    # the first) rebuilds its row from the other days' records and replays the day's.
    now = time.time()
    days = [now - 2 * DAY, now - DAY, now]
    hello = _message("system.connected", network_id="PeerDays", name="n", chain="C",
                     authority=False)
    tick = _message("system.interval", height=1)
    rows = []
    for seq, (day, message) in enumerate(
        [(days[0], hello), (days[0], tick), (days[1], tick), (days[1], tick), (days[2], tick)]
    ):
        rows.append(to_row(message, connection="d" * 32, seq=seq, peer_id="PeerDays",
                           ip="10.0.0.1:9", audit=False, received_at=day,
                           connected_at=days[0] - 5, announced=seq == 0))
    flagged = to_row(tick, connection="e" * 32, seq=0, peer_id="Intruder", ip="10.9.9.9:1",
                     audit=False, received_at=days[1], connected_at=days[1] - 1)
    flagged["sender_flagged"] = True
    anyio.run(store.write, [*rows, flagged])
    store.run_write(mark_disconnected, "d" * 32, False, now + 1)
    catch_up(store)
    before = store.run(_rows)
    by_conn = {r["connection"]: r for r in before}
    kept = by_conn["d" * 32]
    assert (kept["messages"], kept["last_seen"], kept["connected_at"]) == (5, now, days[0] - 5)
    assert (kept["peer_id"], kept["name"], kept["chain"]) == ("PeerDays", "n", "C")
    assert kept["disconnected_at"] == now + 1
    assert by_conn["e" * 32]["peer_id"] is None  # a flagged record names no peer

    db = store.settings.database_url
    assert db == db_url
    _reprocess(db_url, days[1], days[1])
    assert store.run(_rows) == before
    _reprocess(db_url, days[0], days[0])
    assert store.run(_rows) == before
    store.run_write(lambda c: c.execute(delete(node_connections)))
    _reprocess(db_url, days[0], days[2])
    assert store.run(_rows) == before
