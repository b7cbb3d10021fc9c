"""Fixtures: settings, a store and an app on SQLite *and* PostgreSQL, a live server.

Tests that take the ``db_url`` fixture (directly or through ``store``, ``client`` or
``live``) run once per database. ``--db sqlite`` or ``--db postgresql`` picks one.
PostgreSQL is a throwaway server started from the installed binaries for the session
(one per xdist worker); each test gets a fresh database on it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings

from downlink.app import create_app
from downlink.settings import Settings
from downlink.store.database import Store
from downlink.testing.live import LiveServer
from downlink.testing.postgres import TempPostgres

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"

# Property tests check answers, never wall time: hypothesis' default 200 ms deadline per
# example fails them on a busy 2-core machine (seen: 277 ms for one trivial example).
hypothesis_settings.register_profile("downlink", deadline=None)
hypothesis_settings.load_profile("downlink")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        choices=["sqlite", "postgresql", "both"],
        default="both",
        help="database(s) to run storage tests on",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_kind" in metafunc.fixturenames:
        choice = metafunc.config.getoption("--db")
        kinds = ["sqlite", "postgresql"] if choice == "both" else [choice]
        metafunc.parametrize("db_kind", kinds, scope="session")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The shared sample data (real captures and messages)."""
    assert FIXTURES.is_dir(), f"shared fixtures not found at {FIXTURES}"
    return FIXTURES


@pytest.fixture(scope="session")
def postgres() -> Iterator[TempPostgres]:
    """A PostgreSQL server for this test session (or xdist worker)."""
    pg = TempPostgres().start()
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture
def new_database(
    db_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], str]]:
    """A factory of fresh, empty databases of the kind under test, dropped afterwards."""
    created: list[tuple[TempPostgres, str]] = []

    def make(label: str) -> str:
        if db_kind == "sqlite":
            return f"sqlite:///{tmp_path / (label + '.db')}"
        pg: TempPostgres = request.getfixturevalue("postgres")
        name = "t_" + uuid.uuid4().hex[:16]
        created.append((pg, name))
        return pg.create_database(name)

    try:
        yield make
    finally:
        for pg, name in created:
            pg.drop_database(name)


@pytest.fixture
def db_url(new_database: Callable[[str], str]) -> str:
    """A fresh, empty database URL of the kind under test."""
    return new_database("downlink")


@pytest.fixture
def settings(db_url: str) -> Settings:
    """Test settings on the database under test."""
    return Settings(database_url=db_url, batch_wait_ms=1.0)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    """A migrated store with its writer running."""
    s = Store(settings)
    s.start()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """An in-process client of a fully started app."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="session")
def chdb_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one chdb data folder of this test process (chdb opens one per process)."""
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def analytics_url(chdb_folder: Path) -> str:
    """DOWNLINK_ANALYTICS_URL of a fresh ClickHouse database in this process's engine."""
    return f"chdb://{chdb_folder}?database=t_{uuid.uuid4().hex[:16]}"


@pytest.fixture
def live(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """A real ``downlink serve`` subprocess on a free port."""
    server = LiveServer(db_url, log=tmp_path / "server.log").start()
    try:
        yield server
    finally:
        server.stop()
