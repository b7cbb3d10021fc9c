"""The connection to the analytics store, from ``DOWNLINK_ANALYTICS_URL``.

* ``clickhouse://user:password@host:8123/database`` (``clickhouses://`` for HTTPS):
  a ClickHouse server or cluster through its HTTP interface;
* ``chdb:///absolute/path`` (or ``chdb://relative/path``; ``?database=NAME`` picks the
  database, default ``downlink``): ClickHouse's engine inside this process (chdb),
  with its data in that folder. chdb allows one process per
  folder, so a server on a chdb store runs one worker (``downlink serve`` refuses
  more).

Both go through ``clickhouse-connect``; one client serves a process (queries from
several threads are fine on both). Queries always name their columns and pass values
as server-side parameters (``{name:Type}``), never by formatting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from anyio import to_thread

T = TypeVar("T")

SCHEMES = ("clickhouse", "clickhouses", "chdb")
DEFAULT_DATABASE = "downlink"


class AnalyticsError(RuntimeError):
    """The analytics store is misconfigured or cannot be reached."""


class AnalyticsUnavailable(AnalyticsError):
    """ClickHouse did not answer (the API answers 503, like a database outage)."""


@dataclass(frozen=True)
class Target:
    """Where the analytics store is: parsed from the setting, password kept out of repr."""

    scheme: str
    database: str
    host: str = ""
    port: int = 0
    username: str = "default"
    password: str = ""
    path: str = ""

    def __repr__(self) -> str:
        where = self.path if self.scheme == "chdb" else f"{self.host}:{self.port}"
        return f"Target({self.scheme}://{where}/{self.database})"

    @property
    def in_process(self) -> bool:
        """True for chdb (one process per data folder)."""
        return self.scheme == "chdb"


def _check_database(name: str) -> None:
    if not (name.replace("_", "").isalnum() and name.isascii() and not name[0].isdigit()):
        raise AnalyticsError(f"DOWNLINK_ANALYTICS_URL: {name!r} is not a database name")


def parse_url(url: str) -> Target:
    """Parse the setting; AnalyticsError naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise AnalyticsError(
            f"DOWNLINK_ANALYTICS_URL must start with clickhouse://, clickhouses:// or chdb://, "
            f"not {url.split(':', 1)[0]!r}"
        )
    if parts.scheme == "chdb":
        path = unquote(parts.netloc + parts.path)
        if not path or path in ("memory", ":memory:"):
            raise AnalyticsError("DOWNLINK_ANALYTICS_URL=chdb://PATH needs a data folder")
        database = unquote(dict(parse_qsl(parts.query)).get("database", "")) or DEFAULT_DATABASE
        _check_database(database)
        return Target("chdb", database, path=path)
    database = unquote(parts.path.strip("/")) or DEFAULT_DATABASE
    _check_database(database)
    try:
        port = parts.port or (8443 if parts.scheme == "clickhouses" else 8123)
    except ValueError as exc:
        raise AnalyticsError(f"DOWNLINK_ANALYTICS_URL: {exc}") from None
    if not parts.hostname:
        raise AnalyticsError("DOWNLINK_ANALYTICS_URL needs a host")
    return Target(
        parts.scheme,
        database,
        host=parts.hostname,
        port=port,
        username=unquote(parts.username or "default"),
        password=unquote(parts.password or ""),
    )


def _connect(target: Target) -> Any:
    import clickhouse_connect

    if target.in_process:
        client = clickhouse_connect.get_client(dsn=f"chdb://{target.path}")
    else:
        client = clickhouse_connect.get_client(
            host=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            secure=target.scheme == "clickhouses",
            # Queries run from several threads at once: no shared HTTP session.
            autogenerate_session_id=False,
        )
    client.command(f"CREATE DATABASE IF NOT EXISTS {target.database}")
    return client


class Analytics:
    """The analytics store of a process: one client, connected on first use."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.database = target.database
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The clickhouse-connect client (connects the first time)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    try:
                        self._client = _connect(self.target)
                    except ImportError as exc:
                        raise AnalyticsError(
                            "DOWNLINK_ANALYTICS_URL needs the `clickhouse` extra "
                            f"(pip install 'downlink[clickhouse]'): {exc}"
                        ) from None
        return self._client

    def table(self, name: str) -> str:
        """A table's qualified name."""
        return f"{self.database}.{name}"

    def _query(self, sql: str, parameters: dict[str, Any] | None) -> Any:
        from clickhouse_connect.driver.exceptions import OperationalError

        try:
            return self.client.query(sql, parameters=parameters or {})
        except OperationalError as exc:
            raise AnalyticsUnavailable(f"ClickHouse did not answer: {exc}") from exc

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows of a query (``{name:Type}`` placeholders bound from ``parameters``)."""
        result = self._query(sql, parameters)
        return [tuple(r) for r in result.result_rows]

    def query_dicts(
        self, sql: str, parameters: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Rows of a query as dicts by column name."""
        result = self._query(sql, parameters)
        names = result.column_names
        return [dict(zip(names, r, strict=True)) for r in result.result_rows]

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        """Run a statement."""
        return self.client.command(sql, parameters=parameters)

    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        """Insert rows into one of our tables in one block."""
        if rows:
            self.client.insert(self.table(table), list(rows), column_names=list(columns))

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(self, *args)`` in a worker thread (the ClickHouse twin of Store.read)."""
        return await to_thread.run_sync(lambda: fn(self, *args))

    def close(self) -> None:
        """Release the connection."""
        client, self._client = self._client, None
        if client is not None:
            client.close()


_SHARED: dict[str, Analytics] = {}
_SHARED_LOCK = threading.Lock()


def connect(url: str) -> Analytics:
    """The process's analytics store for ``url`` (one per URL: chdb opens a folder once)."""
    target = parse_url(url)
    with _SHARED_LOCK:
        found = _SHARED.get(url)
        if found is None:
            found = _SHARED[url] = Analytics(target)
        return found
