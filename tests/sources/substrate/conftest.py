"""Fixtures for the substrate tests: fixture frames, live servers with chosen settings."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from downlink.store.tables import records
from downlink.testing.live import LiveServer

Frame = dict[str, Any]


@pytest.fixture(scope="session")
def substrate_dir(fixtures_dir: Path) -> Path:
    """The shared substrate sample data."""
    return fixtures_dir / "substrate"


@pytest.fixture(scope="session")
def v1_frames(substrate_dir: Path) -> list[Frame]:
    """Real 2020 V1 messages of a --dev node ("Alice"), system.connected included."""
    path = substrate_dir / "substrate-analytics" / "log_messages.parsed.json"
    frames: list[Frame] = json.loads(path.read_text())
    return frames


@pytest.fixture(scope="session")
def v1_live_frames(substrate_dir: Path) -> list[Frame]:
    """Real Aug 2020 V1 messages of a live node, with a 160 kB system.network_state."""
    path = substrate_dir / "substrate-analytics" / "telemetry_messages.json"
    frames: list[Frame] = json.loads(path.read_text())
    return frames


@pytest.fixture(scope="session")
def v2_frames(substrate_dir: Path) -> list[Frame]:
    """One V2 ``{id, ts, payload}`` frame per message type (reconstructed shapes)."""
    doc = json.loads((substrate_dir / "reconstructed_v2_messages.json").read_text())
    return [m["example"] for m in doc["messages"]]


@pytest.fixture(scope="session")
def parser_cases(substrate_dir: Path) -> list[Frame]:
    """substrate-telemetry's parser test frames (V1, V2, V2 with unknown keys)."""
    path = substrate_dir / "substrate-telemetry" / "node_message_test_fixtures.json"
    cases: list[Frame] = json.loads(path.read_text())
    return cases


LiveFactory = Callable[..., LiveServer]


@pytest.fixture
def live_with(db_url: str, tmp_path: Path) -> Iterator[LiveFactory]:
    """Start ``downlink serve`` subprocesses with extra environment settings."""
    started: list[LiveServer] = []

    def start(env: Mapping[str, str] | None = None) -> LiveServer:
        server = LiveServer(
            db_url, env=dict(env or {}), log=tmp_path / f"server{len(started)}.log"
        ).start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def ws_url(server: LiveServer, path: str = "/") -> str:
    """Return the websocket URL of a live server."""
    return server.url.replace("http://", "ws://", 1) + path


def count_substrate(db_url: str, **where: Any) -> int:
    """Count stored substrate records, optionally filtered by ``attrs`` values."""
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        stmt = select(func.count()).select_from(records).where(records.c.source == "substrate")
        with engine.connect() as conn:
            if not where:
                return int(conn.execute(stmt).scalar_one())
            rows = conn.execute(
                select(records.c.attrs).where(records.c.source == "substrate")
            ).scalars()
            return sum(1 for a in rows if all(a.get(k) == v for k, v in where.items()))
    finally:
        engine.dispose()
