"""Shared OONI test data: the fixture measurements and the default fingerprints."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from downlink.sources.base import LogRecord
from downlink.sources.ooni.consumer import score_batch
from downlink.sources.ooni.fingerprints import Fingerprints, load_default
from downlink.sources.ooni.tables import measurements
from downlink.store.engine import _normalise
from downlink.testing.live import LiveServer

MEASUREMENTS = (
    Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "ooni" / "measurements"
)


def fixture_measurements() -> dict[str, dict[str, Any]]:
    """Every fixture measurement by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted(MEASUREMENTS.glob("*.json"))}


@pytest.fixture(scope="session")
def fps() -> Fingerprints:
    """The fingerprints Downlink ships (OONI's fastpath test data)."""
    return load_default()


def ooni_server(database_url: str, log: Path, workers: int = 1,
                env: dict[str, str] | None = None) -> LiveServer:
    """A started ``downlink serve`` (the OONI source is built in)."""
    return LiveServer(database_url, workers=workers, env=env, log=log).start()


@pytest.fixture
def ooni(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """A live server on the database under test."""
    server = ooni_server(db_url, tmp_path / "server.log")
    try:
        yield server
    finally:
        server.stop()


def drain(database_url: str) -> int:
    """Score every logged measurement, as the core's consumer runner will (idempotent).

    Returns how many fastpath rows were written.
    """
    engine = create_engine(_normalise(database_url))
    try:
        with engine.begin() as conn:
            rows = conn.execute(select(measurements).order_by(measurements.c.id)).mappings()
            batch = [LogRecord(r["id"], r["ts_reception"], dict(r)) for r in rows]
            return score_batch(conn, batch)
    finally:
        engine.dispose()
