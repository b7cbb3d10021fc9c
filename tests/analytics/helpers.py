"""Apps on the same SQL database with and without the ClickHouse analytics store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient

from downlink.app import create_app
from downlink.settings import Settings


def caught_up(client: TestClient, timeout: float = 30.0) -> list[dict[str, object]]:
    """Wait until every consumer (the shippers too) has handled every committed row."""
    deadline = time.monotonic() + timeout
    while True:
        states: list[dict[str, object]] = client.get("/consumers.json").json()["consumers"]
        if all(s["lag_records"] == 0 for s in states):
            return states
        assert time.monotonic() < deadline, f"consumers behind: {states}"
        time.sleep(0.05)


@contextmanager
def app(settings: Settings) -> Iterator[TestClient]:
    """A started app (its consumers running)."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client
