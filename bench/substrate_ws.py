"""Substrate websocket benchmark: node messages per second, sustained, committed.

Starts ``downlink serve`` (SQLite with synchronous=FULL, then a throwaway PostgreSQL
with fsync=on) and connects N simulated nodes over loopback websockets. Each node
streams the 27 reconstructed V2 message shapes in a loop (mean frame about 300 B) and
sends a ``downlink_flush`` request every ``--flush-every`` messages, waiting for the
answer, so every counted message is committed. After ``--seconds`` the nodes flush a
last time; the rate is committed messages / elapsed time, and the benchmark checks that
the database holds exactly that many. The load generator runs on the same machine.

    python bench/substrate_ws.py [--nodes 1,10,100] [--seconds 10] [--db sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, func, select
from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, table, write_section  # noqa: E402

from downlink.store.tables import records  # noqa: E402
from downlink.testing.live import LiveServer  # noqa: E402
from downlink.testing.postgres import TempPostgres  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "substrate"


def load_frames() -> list[bytes]:
    """Return the reconstructed V2 example frames, encoded as a node sends them."""
    doc = json.loads((FIXTURES / "reconstructed_v2_messages.json").read_text())
    return [json.dumps(m["example"]).encode() for m in doc["messages"]]


async def _flush(ws: ClientConnection, token: int) -> int:
    await ws.send(json.dumps({"downlink_flush": token}))
    while True:
        answer = json.loads(await ws.recv())
        if answer.get("downlink_flushed") == token:
            return int(answer["stored"])


class _Clock:
    """Start line shared by the nodes: timing starts once every node is connected."""

    def __init__(self, nodes: int, seconds: float) -> None:
        self.waiting = nodes
        self.seconds = seconds
        self.go = asyncio.Event()
        self.started = self.stop_at = 0.0

    async def ready(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self.started = time.monotonic()
            self.stop_at = self.started + self.seconds
            self.go.set()
        await self.go.wait()


async def _node(url: str, frames: list[bytes], clock: _Clock, flush_every: int, rate: float) -> int:
    async with connect(url, max_size=None, compression=None, open_timeout=60) as ws:
        await clock.ready()
        sent = token = 0
        while time.monotonic() < clock.stop_at:
            if rate > 0:  # paced like a real node: ``rate`` messages per second
                await asyncio.sleep(max(0.0, clock.started + sent / rate - time.monotonic()))
            await ws.send(frames[sent % len(frames)])
            sent += 1
            if sent % flush_every == 0:
                token += 1
                await _flush(ws, token)
        return await _flush(ws, token + 1)


async def _run_nodes(
    url: str, nodes: int, seconds: float, flush_every: int, rate: float = 0.0
) -> tuple[int, float, float]:
    """Return messages committed, seconds from start to the last commit, and the drain
    time: how long after the sending stopped the last message was committed."""
    frames = load_frames()
    clock = _Clock(nodes, seconds)
    stored = await asyncio.gather(
        *(_node(url, frames, clock, flush_every, rate) for _ in range(nodes))
    )
    end = time.monotonic()
    return sum(stored), end - clock.started, end - clock.stop_at


def _count(url: str) -> int:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            stmt = select(func.count()).where(records.c.source == "substrate")
            return int(conn.execute(stmt).scalar_one())
    finally:
        engine.dispose()


def run_one(
    db_url: str, nodes: int, seconds: float, flush_every: int, log: Path, rate: float = 0.0
) -> tuple[float, float]:
    """Measure one configuration; return committed messages/s and the drain time (s)."""
    # One simulated node sends far more than a real one (1-100 messages/s), so the
    # per-connection byte-rate limit is off here; everything else is the default.
    env = {"DOWNLINK_SUBSTRATE_WS_RATE_LIMIT_BYTES": "0"}
    server = LiveServer(db_url, log=log, env=env).start()
    try:
        url = server.url.replace("http://", "ws://", 1) + "/"
        stored, elapsed, drain = asyncio.run(_run_nodes(url, nodes, seconds, flush_every, rate))
    finally:
        server.stop()
    in_db = _count(db_url)
    if in_db != stored:
        raise SystemExit(f"acknowledged {stored} messages but the database holds {in_db}")
    return stored / elapsed, drain


def _database(kind: str, name: str, tmp: str, pg: TempPostgres | None) -> str:
    if kind == "sqlite":
        return f"sqlite:///{Path(tmp) / (name + '.db')}"
    if pg is None:
        raise SystemExit(f"unknown database kind {kind!r}")
    return pg.create_database(name)


def main() -> None:
    """Run the benchmark matrix, print it and write docs/performance.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="1,10,100", help="comma-separated node counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each run")
    parser.add_argument("--db", default="sqlite,postgresql", help="sqlite and/or postgresql")
    parser.add_argument("--flush-every", type=int, default=500, help="messages per flush")
    parser.add_argument(
        "--paced",
        default="500x5",
        help="also run NODESxRATE nodes each sending RATE messages/s ('' to skip)",
    )
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/performance.md")
    args = parser.parse_args()
    node_counts = [int(n) for n in args.nodes.split(",")]
    kinds = [k.strip() for k in args.db.split(",") if k.strip()]
    frames = load_frames()
    mean = sum(len(f) for f in frames) / len(frames)
    about = machine()
    rows: list[list[object]] = []
    pg = TempPostgres().start() if "postgresql" in kinds else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for kind in kinds:
                for n in node_counts:
                    url = _database(kind, f"b{kind[:2]}{n}", tmp, pg)
                    rate, drain = run_one(url, n, args.seconds, args.flush_every, Path(tmp) / "log")
                    print(
                        f"RESULT substrate_ws db={kind} nodes={n} seconds={args.seconds:g} "
                        f"mean_frame_bytes={mean:.0f} committed_msgs_per_s={rate:.0f}"
                        f" drain_s={drain:.2f}",
                        flush=True,
                    )
                    rows.append([kind, n, "as fast as possible", rate, rate * mean / 1e6, drain])
                if args.paced:
                    count, per_node = (float(x) for x in args.paced.split("x"))
                    url = _database(kind, f"paced_{kind[:2]}", tmp, pg)
                    rate, drain = run_one(
                        url, int(count), args.seconds, 10**9, Path(tmp) / "log", per_node
                    )
                    print(
                        f"RESULT substrate_ws db={kind} nodes={int(count)} paced={per_node:g}/s "
                        f"offered={count * per_node:.0f} committed_msgs_per_s={rate:.0f}"
                        f" drain_s={drain:.2f}",
                        flush=True,
                    )
                    rows.append(
                        [kind, int(count), f"{per_node:g}/s each", rate, rate * mean / 1e6, drain]
                    )
    finally:
        if pg is not None:
            pg.stop()
    headers = ["database", "nodes", "sending", "messages/s (committed)", "MB/s", "drain (s)"]
    result = table(headers, rows)
    print(result)
    if not args.no_doc:
        write_section(
            "substrate_ws",
            "## Substrate node websockets (`python bench/substrate_ws.py`)\n\n"
            f"{about}\n\nEach simulated node streams V2 frames (mean {mean:.0f} B) over its own "
            f"loopback websocket to `/` for {args.seconds:g} s, as fast as it can or paced, and "
            f"waits for a `downlink_flush` answer every {args.flush_every} messages (paced "
            "nodes: once, at the end), so every message "
            "counted is committed (and the database count is checked). One server process "
            "with default settings except `DOWNLINK_SUBSTRATE_WS_RATE_LIMIT_BYTES=0` (a "
            "simulated node sends far more than a real one); the load generator shares the "
            "machine. Timing starts once every node is connected; *drain* is how long after "
            "the nodes stopped sending their last message was committed (near 0: the server "
            "kept up)."
            "\n\n" + result,
        )


if __name__ == "__main__":
    main()
