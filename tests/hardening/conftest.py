"""Fixtures of the hardening tests: a live server without and with the spool."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from downlink.testing.live import LiveServer


@pytest.fixture(params=["direct", "spool"])
def server(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """``downlink serve`` on the database under test, without and with the spool."""
    env = {"DOWNLINK_SPOOL_DIR": str(tmp_path / "spool")} if request.param == "spool" else {}
    live = LiveServer(db_url, env=env, log=tmp_path / "server.log").start()
    try:
        yield live
    finally:
        live.stop()
