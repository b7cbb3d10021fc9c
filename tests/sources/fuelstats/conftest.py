"""Fixtures of the fuel-stats tests: a live server per database, request bodies."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.sources.fuelstats.harness import FuelServer


@pytest.fixture(scope="session")
def examples(fixtures_dir: Path) -> Callable[[str], Any]:
    """Load one of the shared fuel-stats example bodies by file name (no .json)."""
    folder = fixtures_dir / "fuel-stats" / "examples"

    def load(name: str) -> Any:
        return json.loads((folder / f"{name}.json").read_text())

    return load


@pytest.fixture
def fuel_server(
    new_database: Callable[[str], str], tmp_path: Path
) -> Iterator[Callable[..., FuelServer]]:
    """A factory of started fuel-stats servers (``env`` adds settings), all stopped after."""
    started: list[FuelServer] = []

    def start(env: dict[str, str] | None = None, database_url: str | None = None) -> FuelServer:
        url = database_url or new_database(f"fuel{len(started)}")
        server = FuelServer(url, env=env, log=tmp_path / f"server{len(started)}.log").start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def fuel(fuel_server: Callable[..., FuelServer]) -> Iterator[httpx.Client]:
    """A client of a fuel-stats server with default settings."""
    server = fuel_server()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client
