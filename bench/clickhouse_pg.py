"""The scale bench's rows in PostgreSQL (``python bench/clickhouse.py --scale N --pg-records M``).

The first ``M`` records (and as large a share of the OONI measurements) generated
inside chdb by ``clickhouse_scale`` are copied into a throwaway PostgreSQL cluster
(``downlink.testing.postgres``, the migrated schema) and given what the SQL store's
pages read besides ``records``:

* ``records`` and ``ooni_fastpath``: exported by chdb as tab-separated text (the
  format ``COPY`` reads: the same escapes, ``\\N`` for NULL) in parts of
  ``CHUNK`` records, streamed into ``COPY … FROM STDIN``, the plain indexes of both
  dropped for the load and created afterwards, then ``VACUUM ANALYZE``;
* the crash groups: the generated ``guilty`` and "never guilty" rows of the
  ClickHouse reads' SQL side, with their ids; each crash record's ``guilty_id`` comes
  with it (generated as the group whose frame the ClickHouse query finds guilty, what
  a shipper ships once the crash consumer has run), instead of the crash consumer
  parsing a backtrace (the generated payloads have none);
* the rollups: every part's Clear Linux records go through the consumers' own
  functions, ``update_counts`` (``clearlinux_rollups``) and ``update_crashes``
  (``clearlinux_crashes``), in the part's transaction, as the consumers apply a batch.
  Only the MCE records' payloads are fetched (the only ones the rollups read).

PostgreSQL runs with ``fsync=off`` (the load only), ``shared_buffers=2GB`` and
``maintenance_work_mem=1GB`` (the index builds after the load).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, insert, select

from downlink.analytics import records as records_table
from downlink.analytics.client import Analytics
from downlink.settings import Settings
from downlink.sources.clearlinux.mce import MCE_PREFIX
from downlink.sources.clearlinux.rollups import update_counts, update_crashes
from downlink.sources.clearlinux.tables import guilty, guilty_blacklist
from downlink.sources.clearlinux.wire import SOURCE
from downlink.sources.ooni import clickhouse, rollup
from downlink.store import migrate
from downlink.store.engine import _normalise
from downlink.testing.postgres import TempPostgres

CHUNK = 200_000
# The columns of the SQL ``records`` the export fills (``dedup_key`` stays NULL:
# generated records are never retransmitted); ``guilty_id`` is computed.
_COPIED = tuple(c for c, _ in records_table.COLUMNS if c not in ("audit", "shipped_at"))


@dataclass
class Loaded:
    """A loaded PostgreSQL database and what its load took."""

    pg: TempPostgres
    engine: Engine
    records: int
    ooni: int
    copy_s: float = 0.0
    rollups_s: float = 0.0
    indexes_s: float = 0.0
    ooni_s: float = 0.0
    vacuum_s: float = 0.0
    database_bytes: int = 0
    ooni_bytes: int = 0
    copy_cpu: float = 0.0  # CPU seconds: this process and the cluster's
    rollups_cpu: float = 0.0
    ooni_cpu: float = 0.0

    def cpu(self) -> float:
        """CPU seconds used so far by this process and the cluster."""
        return time.process_time() + ClusterCpu(self.pg)()

    def bytes_per_record(self) -> float:
        """Bytes of the database per record: ``records``, its indexes and the rollups."""
        return (self.database_bytes - self.ooni_bytes) / max(self.records, 1)

    def bytes_per_measurement(self) -> float:
        """Bytes of ``ooni_fastpath`` with its indexes per measurement."""
        return self.ooni_bytes / max(self.ooni, 1)

    def stop(self) -> None:
        """Stop the cluster and delete its files."""
        self.engine.dispose()
        self.pg.stop()


def _start(under: Path) -> tuple[TempPostgres, str]:
    pg = TempPostgres(under=under).start()
    try:
        admin = create_engine(_normalise(pg.admin_url), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql("ALTER SYSTEM SET shared_buffers = '2GB'")
            conn.exec_driver_sql("ALTER SYSTEM SET maintenance_work_mem = '1GB'")  # indexes
        admin.dispose()
        pg.pause()
        pg.resume()
        return pg, pg.create_database("scale")
    except BaseException:
        pg.stop()
        raise


def _copy(conn: Any, table: str, columns: tuple[str, ...], data: bytes) -> None:
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        cp.write(data)


_LOADED = ("records", clickhouse.TABLE.name)


def _secondary_indexes(conn: Any) -> list[tuple[str, str]]:
    """(name, CREATE statement) of the plain indexes on the loaded tables."""
    sql = (
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename IN "
        f"({', '.join(repr(t) for t in _LOADED)}) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
    )
    return [(str(name), str(ddl)) for name, ddl in conn.exec_driver_sql(sql)]


def load(ch: Analytics, n: int, ooni_n: int, side: Any, under: Path) -> Loaded:
    """Copy the first ``n`` records and ``ooni_n`` measurements of ``ch`` into a new
    PostgreSQL cluster under ``under``, with their crash groups (copied from the SQL
    side ``side`` of the ClickHouse reads) and rollups."""
    pg, url = _start(under)
    engine = create_engine(_normalise(url))
    done = Loaded(pg, engine, n, ooni_n)
    try:
        migrate.upgrade(engine, sources=Settings(database_url=url).registry)
        _groups(side, engine)
        with engine.begin() as conn:
            indexes = _secondary_indexes(conn)
            for name, _ in indexes:
                conn.exec_driver_sql(f"DROP INDEX {name}")
        _records(ch, n, done)
        start, start_cpu = time.perf_counter(), done.cpu()
        _ooni(ch, ooni_n, engine)
        done.ooni_s = time.perf_counter() - start
        done.ooni_cpu = done.cpu() - start_cpu
        start = time.perf_counter()
        with engine.begin() as conn:
            for _, ddl in indexes:
                conn.exec_driver_sql(ddl)
        done.indexes_s = time.perf_counter() - start
        raw_engine = create_engine(_normalise(url), isolation_level="AUTOCOMMIT")
        with raw_engine.connect() as conn:
            start = time.perf_counter()
            conn.exec_driver_sql("VACUUM ANALYZE")  # a settled table: visibility map, stats
            done.vacuum_s = time.perf_counter() - start
            done.database_bytes, done.ooni_bytes = (int(v) for v in conn.exec_driver_sql(
                "SELECT pg_database_size(current_database()), "
                "pg_total_relation_size('ooni_fastpath')"
            ).one())
        raw_engine.dispose()
    except BaseException:
        done.stop()
        raise
    return done


def _groups(side: Any, engine: Engine) -> None:
    """The SQL side's crash groups and "never guilty" list, with the same ids."""
    with side.connect() as src, engine.begin() as dst:
        for table in (guilty, guilty_blacklist):
            rows = [dict(r) for r in src.execute(select(table)).mappings()]
            if rows:
                dst.execute(insert(table), rows)
            dst.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                f"(SELECT max(id) FROM {table.name}))")


def _records(ch: Analytics, n: int, done: Loaded) -> None:
    table = ch.table("records")
    export = ", ".join(_COPIED)
    needed = (
        "id, source, classification, severity, machine_id, ts_reception, build, host_type, "
        f"if(startsWith(classification, '{MCE_PREFIX}'), payload, '') AS payload, "
        "guilty_id, ifNull(sender_flagged, false) AS sender_flagged"
    )
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        where = f"WHERE id > {lo} AND id <= {hi}"
        start, start_cpu = time.perf_counter(), done.cpu()
        data = ch.client.raw_query(f"SELECT {export} FROM {table} {where} ORDER BY id",
                                   fmt="TabSeparated")
        rows = ch.query_dicts(f"SELECT {needed} FROM {table} {where} AND source = "
                              f"'{SOURCE}' ORDER BY id")
        with done.engine.begin() as conn:
            _copy(conn, "records", _COPIED, data)
            copied, copied_cpu = time.perf_counter(), done.cpu()
            done.copy_s += copied - start
            done.copy_cpu += copied_cpu - start_cpu
            update_counts(conn, rows)
            update_crashes(conn, [r for r in rows if r["guilty_id"] is not None])
        done.rollups_s += time.perf_counter() - copied
        done.rollups_cpu += done.cpu() - copied_cpu
        print(f"  PostgreSQL: {hi:,} records (copy {done.copy_s:.0f} s, {done.copy_cpu:.0f} s "
              f"CPU; rollups {done.rollups_s:.0f} s, {done.rollups_cpu:.0f} s CPU)", flush=True)


def _ooni(ch: Analytics, n: int, engine: Engine) -> None:
    names = tuple(name for name, _ in clickhouse.COLUMNS)
    table = ch.table(clickhouse.TABLE.name)
    # The measurements are generated numbered in their uid (``_ooni_sql``).
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        data = ch.client.raw_query(
            f"SELECT {', '.join(names)} FROM {table} "
            f"WHERE toUInt64(substring(measurement_uid, 9, 12)) >= {lo} "
            f"AND toUInt64(substring(measurement_uid, 9, 12)) < {hi}",
            fmt="TabSeparated",
        )
        with engine.begin() as conn:
            _copy(conn, clickhouse.TABLE.name, names, data)
    with engine.begin() as conn:
        rollup.rebuild(conn)  # the aggregation rollups, recounted in SQL after a bulk load


def folder_of(path: Path) -> Path:
    """``path``, readable by the cluster's user (a temporary folder is private)."""
    path.chmod(0o755)
    return path


class ClusterCpu:
    """CPU seconds used so far by a cluster's server processes: its live backends and
    helpers, and the postmaster with the children it has reaped (parallel query
    workers end before the query does)."""

    def __init__(self, pg: TempPostgres) -> None:
        self.postmaster = int((pg.datadir / "postmaster.pid").read_text().split()[0])
        self.tick = os.sysconf("SC_CLK_TCK")

    def __call__(self) -> float:
        ticks = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile: its time is now in the postmaster's
            pid, ppid = int(entry.name), int(fields[1])
            if pid == self.postmaster:
                ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
            elif ppid == self.postmaster:
                ticks += int(fields[11]) + int(fields[12])
        return ticks / self.tick
