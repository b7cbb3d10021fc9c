"""The fastpath as a post-ack consumer of the measurement log.

It follows ``ooni_measurements`` in id order and writes one ``ooni_fastpath`` row per
measurement, in the same transaction as the consumer's cursor (the core's job), so a
measurement is scored exactly once per pass; re-scoring replaces rows by
measurement_uid, so a replay of any range leaves identical rows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from sqlalchemy import ColumnElement, Connection, Table, func

from downlink.sources.base import Consumer, LogRecord, ReprocessFilter
from downlink.sources.ooni import fastpath, fastpath_store, fingerprint_store
from downlink.sources.ooni.tables import fastpath as fastpath_table


def score_batch(conn: Connection, batch: Sequence[LogRecord]) -> int:
    """Score a batch of log records and upsert their rows; returns how many were written."""
    fps = fingerprint_store.current(conn)
    rows = []
    received = []
    for record in batch:
        row = fastpath.build_row(
            bytes(record.row["body"]),
            record.row["measurement_uid"],
            record.row["report_id"],
            fps,
        )
        if row is not None:
            rows.append(row)
            received.append(record.ts)
    fastpath_store.upsert(conn, rows, received)
    return len(rows)


def _handle(conn: Connection, batch: Sequence[LogRecord]) -> None:
    score_batch(conn, batch)


def _reset(conn: Connection, since: float, until: float) -> None:
    fastpath_store.delete_received(conn, since, until)


_CC = re.compile(r"[A-Z]{2}")
_TESTNAME = re.compile(r"[a-z0-9]{1,64}")


def country(value: str) -> str:
    """A country code of ``--ccs`` (upper-cased); ValueError if it is not one."""
    cc = value.strip().upper()
    if not _CC.fullmatch(cc):
        raise ValueError(f"not a two-letter country code: {value.strip()!r}")
    return cc


def testname(value: str) -> str:
    """A test name of ``--testnames``, without underscores (``webconnectivity``, as
    the archive's file names spell it); ValueError if it is not one."""
    name = value.strip().replace("_", "").lower()
    if not _TESTNAME.fullmatch(name):
        raise ValueError(f"not a test name: {value.strip()!r}")
    return name


def _of_countries(table: Table, ccs: tuple[str, ...]) -> ColumnElement[bool]:
    return table.c.probe_cc.in_(ccs)


def _of_tests(table: Table, names: tuple[str, ...]) -> ColumnElement[bool]:
    return func.replace(table.c.test_name, "_", "").in_(names)


# ``downlink reprocess --source ooni --ccs IT,DE --testnames webconnectivity`` (the
# measurements still in the log) and ``downlink ooni reprocess`` (the archive's).
FILTERS = (
    ReprocessFilter("ccs", "Only these countries, e.g. IT,DE.", _of_countries, country),
    ReprocessFilter(
        "testnames", "Only these tests, e.g. webconnectivity,tor (underscores optional).",
        _of_tests, testname,
    ),
)


def _reset_matching(
    conn: Connection, since: float, until: float, values: Mapping[str, tuple[str, ...]]
) -> None:
    """Forget the scores of the matching measurements received in ``[since, until)``.

    The filters' conditions hold on ``ooni_fastpath`` too (same column names).
    """
    by_name = {f.name: f for f in FILTERS}
    where = [by_name[name].where(fastpath_table, chosen) for name, chosen in values.items()]
    fastpath_store.delete_received(conn, since, until, *where)


FASTPATH = Consumer(
    name="ooni_fastpath",
    follows="ooni_measurements",
    handle=_handle,
    reset=_reset,
    batch_max=500,
    filters=FILTERS,
    reset_matching=_reset_matching,
)
