"""Fixtures: settings, a store and an app on SQLite *and* PostgreSQL, a live server.

Tests that take the ``db_url`` fixture (directly or through ``store``, ``client`` or
``live``) run once per database. ``--db sqlite`` or ``--db postgresql`` picks one.
PostgreSQL is a throwaway server started from the installed binaries for the session
(one per xdist worker); each test gets a fresh database on it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine

from downlink.app import create_app
from downlink.settings import Settings
from downlink.store import migrate
from downlink.store.database import Store
from downlink.testing import forkserver
from downlink.testing.live import LiveServer
from downlink.testing.postgres import TempPostgres

# The migrated database copied for each test (see ``migrated_templates``).
TEMPLATE = "downlink_template"

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


KINDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_kind" in metafunc.fixturenames:
        choice = metafunc.config.getoption("--db")
        kinds = list(KINDS) if choice == "both" else [choice]
        # ``@pytest.mark.databases("sqlite")``: a test of something no database changes
        # (the browser's view of the pages) runs on the named ones only.
        only = metafunc.definition.get_closest_marker("databases")
        if only is not None:
            kinds = [k for k in kinds if k in only.args]
        metafunc.parametrize("db_kind", kinds, scope="session")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order and group tests so module-scoped fixtures are set up once per database.

    pytest interleaves the ``db_kind`` parameter with a test's other parameters, so a
    module-scoped fixture of one database (a server for the whole module) was set up
    again at every switch between SQLite and PostgreSQL. Each module's tests now run
    SQLite first, then PostgreSQL, in their collected order. A test using a
    module-scoped fixture is put in an ``xdist_group`` of its module, so that with
    ``--dist loadgroup`` one worker runs the module instead of both workers setting its
    fixtures up by turns.
    """
    module = {item: item.nodeid.split("::", 1)[0] for item in items}
    order: dict[str, int] = {}
    for name in module.values():
        order.setdefault(name, len(order))

    def key(item: pytest.Item) -> tuple[int, int]:
        spec = getattr(item, "callspec", None)
        kind = spec.params.get("db_kind") if spec is not None else None
        rank = KINDS.index(kind) if kind in KINDS else -1
        return order[module[item]], rank

    items.sort(key=key)
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        defs = info.name2fixturedefs.values() if info is not None else ()
        if any(d[-1].scope == "module" for d in defs if d):
            item.add_marker(pytest.mark.xdist_group(module[item]))


@pytest.fixture(scope="session", autouse=True)
def fork_server() -> Iterator[forkserver.ForkServer | None]:
    """Live servers forked from one warm interpreter per test process (see
    :mod:`downlink.testing.forkserver`): a server start costs a quarter of the CPU.
    ``DOWNLINK_TEST_FORKSERVER=0`` starts each as a plain ``python -m downlink``."""
    if os.environ.get("DOWNLINK_TEST_FORKSERVER", "1") == "0":
        yield None
        return
    server = forkserver.ForkServer().start()
    forkserver.install(server)
    try:
        yield server
    finally:
        forkserver.install(None)
        server.stop()


@pytest.fixture(scope="session", autouse=True)
def one_tls_context() -> Iterator[None]:
    """One SSL context for every httpx client the tests make.

    httpx builds a context for each client and each ``httpx.get()``, parsing certifi's
    bundle again: about 50 ms of CPU each (measured: 57 ms a call against 0.3 ms
    through one client), which made the tests' polling loops CPU-bound. The tests
    speak plain HTTP; the default context is built once and handed to every client
    that asks for the default."""
    import httpx._transports.default as transports

    built = httpx.create_ssl_context()
    original = transports.create_ssl_context

    def shared(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
        if verify is True and cert is None:
            return built
        return original(verify=verify, cert=cert, trust_env=trust_env)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transports, "create_ssl_context", shared)
        yield


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


@pytest.fixture(scope="session")
def migrated_templates(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Callable[[str], str]:
    """``template(kind)``: a database of that kind migrated to every head of the built-in
    sources, made once per session (or xdist worker): a SQLite file to copy, or a
    PostgreSQL database for ``CREATE DATABASE ... TEMPLATE``.

    Migrating from empty costs 0.6-1.4 s on a busy 2-core machine and most tests start
    a store on a fresh database; copying a migrated one costs milliseconds. Every store
    still runs its migrations at start (a no-op at head, as on any restart). Not
    parametrized by ``db_kind``: a session fixture of a parameter is set up again each
    time the parameter changes.
    """
    made: dict[str, str] = {}

    def template(kind: str) -> str:
        if kind in made:
            return made[kind]
        if kind == "sqlite":
            path = tmp_path_factory.mktemp("template") / "downlink.db"
            url = f"sqlite:///{path}"
        else:
            pg: TempPostgres = request.getfixturevalue("postgres")
            url = pg.create_database(TEMPLATE)
        engine = create_engine(url)
        try:
            migrate.upgrade(engine)
            if kind == "sqlite":
                with engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            engine.dispose()
        made[kind] = str(path) if kind == "sqlite" else TEMPLATE
        return made[kind]

    return template


@pytest.fixture
def new_database(
    db_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., str]]:
    """A factory of fresh databases of the kind under test, dropped afterwards:
    ``make(label)`` is migrated to every head of the built-in sources (a copy of
    :func:`migrated_templates`), ``make(label, empty=True)`` has no tables at all (for
    tests of the migrations themselves)."""
    created: list[tuple[TempPostgres, str]] = []

    def make(label: str, empty: bool = False) -> str:
        url, dropped = _database(db_kind, tmp_path / (label + ".db"), request, empty=empty)
        if dropped is not None:
            created.append(dropped)
        return url

    try:
        yield make
    finally:
        for pg, name in created:
            pg.drop_database(name)


def _database(
    kind: str, path: Path, request: pytest.FixtureRequest, *, empty: bool = False
) -> tuple[str, tuple[TempPostgres, str] | None]:
    """A new database of ``kind``: a copy of the migrated template (or, ``empty``, no
    tables), at ``path`` on SQLite; its URL, and on PostgreSQL the server and name to
    drop afterwards."""
    template = None if empty else request.getfixturevalue("migrated_templates")(kind)
    if kind == "sqlite":
        if template is not None:
            shutil.copyfile(template, path)
        return f"sqlite:///{path}", None
    pg: TempPostgres = request.getfixturevalue("postgres")
    name = "t_" + uuid.uuid4().hex[:16]
    return pg.create_database(name, template=template), (pg, name)


@pytest.fixture(scope="module")
def module_db_url(
    db_kind: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A migrated database of the kind under test shared by a module's tests (for a
    module-scoped server), dropped after them."""
    url, dropped = _database(db_kind, tmp_path_factory.mktemp("module") / "downlink.db", request)
    try:
        yield url
    finally:
        if dropped is not None:
            dropped[0].drop_database(dropped[1])


@pytest.fixture
def db_url(new_database: Callable[..., str]) -> str:
    """A fresh database URL of the kind under test, migrated to every head."""
    return new_database("downlink")


@pytest.fixture
def empty_db_url(new_database: Callable[..., str]) -> str:
    """A fresh database URL of the kind under test with no tables (not migrated)."""
    return new_database("downlink", empty=True)


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
