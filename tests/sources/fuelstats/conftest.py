"""Fixtures of the fuel-stats tests: real `downlink serve` servers per database, bodies."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from downlink.testing.live import LiveServer


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
) -> Iterator[Callable[..., LiveServer]]:
    """A factory of started fuel-stats servers (``env`` adds settings), all stopped after."""
    started: list[LiveServer] = []

    def start(env: dict[str, str] | None = None, database_url: str | None = None) -> LiveServer:
        url = database_url or new_database(f"fuel{len(started)}")
        server = LiveServer(url, env=env, log=tmp_path / f"server{len(started)}.log").start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def fuel(fuel_server: Callable[..., LiveServer]) -> Iterator[httpx.Client]:
    """A client of a fuel-stats server with default settings."""
    server = fuel_server()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


class Served:
    """A module's fuel-stats server: its client, database URL and rules file."""

    def __init__(self, server: LiveServer, database_url: str, rules: Path) -> None:
        self.server = server
        self.database_url = database_url
        self.rules = rules
        self.client = httpx.Client(base_url=server.url, timeout=30)


@pytest.fixture(scope="module")
def served(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for a whole test module (tests use their own master node uids)."""
    tmp = tmp_path_factory.mktemp("fuel")
    rules = tmp / "rules.json"
    rules.write_text("null")
    env = {"DOWNLINK_FUEL_FILTERING_RULES": str(rules), "DOWNLINK_FUEL_REPORT_CACHE_S": "0"}
    server = LiveServer(module_db_url, env=env, log=tmp / "server.log").start()
    found = Served(server, module_db_url, rules)
    try:
        yield found
    finally:
        found.client.close()
        server.stop()


@pytest.fixture
def uid() -> str:
    """A master node uid of this test's own."""
    return "mn-" + uuid.uuid4().hex[:12]
