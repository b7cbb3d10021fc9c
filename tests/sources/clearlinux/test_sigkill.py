"""SIGKILL at random points of ingest and of the consumers: nothing acknowledged is
lost, nothing is counted twice (Clear Linux's rollups, substrate's connection rows).

A ``downlink serve`` takes a concurrent load of heartbeats, crashes (of several
groups) and machine checks and is killed at a random moment, twice; then a backlog is
stored with the consumers off and a two-worker server (two processes' consumers
competing) is killed while they work through it (so mid-batch). After a last restart
every acknowledged record is stored, and every derived count equals a recount from the
records.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from websockets.asyncio.client import connect

from downlink.settings import Settings
from downlink.sources.substrate.connections import fold
from downlink.sources.substrate.tables import node_connections
from downlink.store.engine import make_engine
from downlink.store.tables import records
from downlink.testing.consumers import wait_caught_up
from downlink.testing.live import LiveServer
from tests.sources.clearlinux.derived import recount
from tests.sources.substrate.client import connected, flush, frame, send_frames
from tests.web.helpers import CRASH, MCE
from tests.wire import v2_headers

FRAMES = ("clock_nanosleep@GLIBC_2.2.5()", "g_main_loop_run()", "wl_display_dispatch()")


def _record(rng: random.Random) -> tuple[dict[str, str], bytes]:
    kind = rng.random()
    machine = f"m{rng.randrange(30):02d}"
    if kind < 0.4:
        frame = rng.choice(FRAMES)
        over = {"classification": "org.clearlinux/crash/clr", "severity": "3"}
        body = CRASH.replace("clock_nanosleep@GLIBC_2.2.5()", frame)
    elif kind < 0.55:
        over = {"classification": "org.clearlinux/mce/corrected", "severity": "2"}
        body = MCE
    else:
        over = {"classification": "org.clearlinux/heartbeat/ping"}
        body = "alive"
    over |= {"machine_id": machine, "build": f'"{31000 + rng.randrange(3)}"'}
    return v2_headers(over), body.encode()


class Load:
    """Threads posting records until stopped; remembers the acknowledged event ids."""

    def __init__(self, url: str, seed: int, threads: int = 8) -> None:
        self.url = url
        self.acked: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._post, args=(seed + i,))
                        for i in range(threads)]

    def _post(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.url, timeout=5) as http:
            while not self.stop.is_set():
                headers, body = _record(rng)
                try:
                    r = http.post("/v2/collector", headers=headers, content=body)
                except httpx.HTTPError:
                    return  # the server died under us: never acknowledged
                if r.status_code == 201:
                    with self.lock:
                        self.acked.append(headers["event_id"])

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)


def _stored_events(url: str) -> set[str]:
    stored: set[str] = set()
    cursor = None
    while True:
        params = {"limit": "10000"} | ({"before_id": str(cursor)} if cursor else {})
        page = httpx.get(url + "/api/records", params=params, timeout=30).json()
        stored.update(r["event_id"] for r in page["records"])
        cursor = page["next_cursor"]
        if cursor is None:
            return stored


@pytest.mark.slow
def test_sigkill_during_ingest_and_consumers_loses_and_double_counts_nothing(
    db_url: str, tmp_path: Path
) -> None:
    rng = random.Random(20261130)
    acked: list[str] = []
    for round_ in range(2):  # killed at a random moment of a concurrent load
        server = LiveServer(db_url, log=tmp_path / f"load{round_}.log").start()
        with Load(server.url, seed=round_ * 100) as load:
            time.sleep(rng.uniform(0.5, 3.0))
            server.kill()
        acked += load.acked
    # A backlog stored with the consumers off, then killed while they work through it.
    quiet = LiveServer(db_url, env={"DOWNLINK_CONSUMER_POLL_S": "0"},
                       log=tmp_path / "backlog.log").start()
    with Load(quiet.url, seed=999) as load:
        time.sleep(3.0)
        # Substrate nodes too: its connections consumer gets a backlog of its own.
        assert _stream_nodes(quiet.url, 5, 50) == 5 * 51
    quiet.stop()
    acked += load.acked
    server = LiveServer(db_url, workers=2, log=tmp_path / "catchup.log").start()
    time.sleep(rng.uniform(0.1, 1.0))
    server.kill()
    assert len(acked) >= 200, "the load never got going"

    server = LiveServer(db_url, log=tmp_path / "last.log").start()
    try:
        wait_caught_up(server.url, timeout=120)
        missing = set(acked) - _stored_events(server.url)
        assert not missing, f"{len(missing)} acknowledged records lost of {len(acked)}"
    finally:
        server.stop()
    engine = make_engine(Settings(database_url=db_url))
    try:
        check = recount(engine)
    finally:
        engine.dispose()
    assert check["want"]["per_group"], "no crash was grouped"
    assert check["got"] == {k: check["want"][k] for k in check["got"]}
    assert _connections_recounted(db_url)


def _stream_nodes(url: str, connections: int, messages: int) -> int:
    """Stream ``connections`` substrate nodes of ``messages`` frames each; stored count."""

    async def run() -> int:
        stored = 0
        for c in range(connections):
            async with connect(url.replace("http://", "ws://", 1) + "/") as ws:
                await send_frames(ws, [connected(1, f"PeerKill{c}", f"n{c}"),
                                       *(frame(1, k) for k in range(messages))])
                stored += int((await flush(ws))["stored"])
        return stored

    return asyncio.run(run())


def _connections_recounted(db_url: str) -> bool:
    """The connection rows equal a fold of every substrate record (none counted twice)."""
    engine = make_engine(Settings(database_url=db_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(records).where(records.c.source == "substrate"))
            want = fold(r._asdict() for r in rows)
            got = {(r.connection, r.node): r for r in conn.execute(select(node_connections))}
    finally:
        engine.dispose()
    assert len(want) == 5 and got.keys() == want.keys()
    for key, row in want.items():
        found = got[key]
        assert (found.messages, found.last_seen, found.peer_id, found.name) == (
            row["messages"], row["last_seen"], row["peer_id"], row["name"])
    return True
