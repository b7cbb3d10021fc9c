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


async def _node(url: str, frames: list[bytes], stop_at: float, flush_every: int) -> int:
    async with connect(url, max_size=None, compression=None) as ws:
        sent = token = 0
        while time.monotonic() < stop_at:
            await ws.send(frames[sent % len(frames)])
            sent += 1
            if sent % flush_every == 0:
                token += 1
                await _flush(ws, token)
        return await _flush(ws, token + 1)


async def _run_nodes(url: str, nodes: int, seconds: float, flush_every: int) -> tuple[int, float]:
    frames = load_frames()
    started = time.monotonic()
    stop_at = started + seconds
    stored = await asyncio.gather(*(_node(url, frames, stop_at, flush_every) for _ in range(nodes)))
    return sum(stored), time.monotonic() - started


def _count(url: str) -> int:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            stmt = select(func.count()).where(records.c.source == "substrate")
            return int(conn.execute(stmt).scalar_one())
    finally:
        engine.dispose()


def run_one(db_url: str, nodes: int, seconds: float, flush_every: int, log: Path) -> float:
    """Measure one configuration; return committed messages per second."""
    server = LiveServer(db_url, log=log).start()
    try:
        url = server.url.replace("http://", "ws://", 1) + "/"
        stored, elapsed = asyncio.run(_run_nodes(url, nodes, seconds, flush_every))
    finally:
        server.stop()
    in_db = _count(db_url)
    if in_db != stored:
        raise SystemExit(f"acknowledged {stored} messages but the database holds {in_db}")
    return stored / elapsed


def main() -> None:
    """Run the benchmark matrix, print it and write docs/performance.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="1,10,100", help="comma-separated node counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each run")
    parser.add_argument("--db", default="sqlite,postgresql", help="sqlite and/or postgresql")
    parser.add_argument("--flush-every", type=int, default=500, help="messages per flush")
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
                    name = f"b{kind[:2]}{n}"
                    if kind == "sqlite":
                        url = f"sqlite:///{Path(tmp) / (name + '.db')}"
                    else:
                        assert pg is not None
                        url = pg.create_database(name)
                    rate = run_one(url, n, args.seconds, args.flush_every, Path(tmp) / "log")
                    print(
                        f"RESULT substrate_ws db={kind} nodes={n} seconds={args.seconds:g} "
                        f"mean_frame_bytes={mean:.0f} committed_msgs_per_s={rate:.0f}",
                        flush=True,
                    )
                    rows.append([kind, n, rate, rate * mean / 1e6])
    finally:
        if pg is not None:
            pg.stop()
    result = table(["database", "nodes", "messages/s (committed)", "MB/s"], rows)
    print(result)
    if not args.no_doc:
        write_section(
            "substrate_ws",
            "## Substrate node websockets (`python bench/substrate_ws.py`)\n\n"
            f"{about}\n\nEach simulated node streams V2 frames (mean {mean:.0f} B) over its own "
            f"loopback websocket to `/` for {args.seconds:g} s and waits for a "
            f"`downlink_flush` answer every {args.flush_every} messages, so every message "
            "counted is committed (and the database count is checked). One server process; "
            "the load generator shares the machine.\n\n" + result,
        )


if __name__ == "__main__":
    main()
