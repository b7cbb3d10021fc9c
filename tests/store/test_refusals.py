"""Refused record or outage: decided by a probe, whatever the driver raises."""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DataError, OperationalError

from downlink.settings import Settings
from downlink.sources.clearlinux.wire import fields_from_headers, validate
from downlink.store.database import Store
from downlink.store.engine import make_engine
from downlink.store.envelope import Envelope, wrap
from downlink.store.refusals import is_outage, store_items
from downlink.store.sinks import Processor, RecordsSink
from downlink.testing.postgres import TempPostgres
from tests.wire import TID, v2_headers


def row(payload: str, **changes: Any) -> dict[str, Any]:
    fields = fields_from_headers(v2_headers().items())
    found = validate(fields, payload.encode(), allowed_tids=[TID], received_at=time.time())
    return {**found, **changes}


def store_rows(
    engine: Engine, rows: list[dict[str, Any]], processors: list[Processor] | None = None
) -> list[Envelope]:
    return store_items(engine, RecordsSink(processors or ()), wrap(rows))


def test_outage_types_whether_wrapped_or_raw() -> None:
    assert is_outage(OperationalError("SELECT", {}, Exception("gone")))
    assert is_outage(psycopg.OperationalError("connection refused"))
    assert is_outage(ConnectionResetError())
    assert not is_outage(DataError("COPY", {}, Exception("bad")))
    assert not is_outage(psycopg.errors.CharacterNotInRepertoire("x"))
    assert not is_outage(psycopg.errors.RaiseException("x"))
    assert not is_outage(ValueError("processor bug"))


def test_only_the_refused_rows_are_left_out(settings: Settings) -> None:
    store = Store(settings)
    store.migrate()
    try:
        poison = row("poison", machine_id="x" * 40)
        with store.write_engine.begin() as conn:
            if store.dialect == "sqlite":
                conn.exec_driver_sql(
                    "CREATE TRIGGER long_id BEFORE INSERT ON records "
                    "WHEN length(NEW.machine_id) > 32 BEGIN SELECT RAISE(ABORT, 'too long'); END"
                )
            else:
                conn.exec_driver_sql(
                    "ALTER TABLE records ADD CONSTRAINT short_id CHECK (length(machine_id) <= 32)"
                )
        rows = [row("a"), poison, row("b")]
        out = store_rows(store.write_engine, rows)
        assert [r.row.get("payload") for r in out] == ["a", "poison", "b"]
        assert isinstance(out[0].id, int) and isinstance(out[2].id, int)
        assert out[1].id is None and out[1].failed and out[1].refused
        expected = "IntegrityError" if store.dialect == "sqlite" else "CheckViolation"
        assert (out[1].error or "").startswith(expected)
        # A retransmission of a stored row is found, not refused.
        assert store_rows(store.write_engine, [rows[0]])[0].duplicate is True
    finally:
        store.close()


@pytest.mark.postgres
def test_a_nul_on_postgres_is_refused_as_one_record(postgres: TempPostgres) -> None:
    name = "t_" + uuid.uuid4().hex[:16]
    store = Store(Settings(database_url=postgres.create_database(name)))
    store.migrate()
    try:
        # psycopg raises its own DataError from COPY, not through SQLAlchemy: the class
        # of error that jammed the spool drainer (issue 9). (SQLite would store the NUL;
        # Store.write refuses it before either database sees it.)
        out = store_rows(store.write_engine, [row("a"), row("n", system_name="a\x00b")])
        assert isinstance(out[0].id, int)
        assert out[1].id is None and (out[1].error or "").startswith("DataError")
    finally:
        store.close()
        postgres.drop_database(name)


def test_a_database_refusing_every_record_is_an_outage(
    settings: Settings, tmp_path: Any
) -> None:
    """Read-only (a standby after failover, a revoked privilege): the probe fails too,
    so nothing is marked refused and the caller keeps every row for later."""
    store = Store(settings)
    store.migrate()
    store.close()
    if settings.database_url.startswith("sqlite"):
        path = settings.database_url.removeprefix("sqlite:///")
        url = f"sqlite:///file:{path}?mode=ro&uri=true"
    else:
        name = settings.database_url.rsplit("/", 1)[1]
        admin = create_engine(settings.database_url.replace("postgresql://",
                                                            "postgresql+psycopg://", 1))
        with admin.begin() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
        admin.dispose()
        url = settings.database_url
    engine = make_engine(settings.replace(database_url=url), writer=True)
    try:
        with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
            store_rows(engine, [row("a"), row("b")])
    finally:
        engine.dispose()


def test_one_refused_row_among_many_costs_log_attempts(settings: Settings) -> None:
    attempts: list[int] = []

    def picky(_conn: Any, rows: list[dict[str, Any]]) -> None:
        attempts.append(len(rows))
        if any(r["payload"] == "poison" for r in rows):
            raise ValueError("processor bug")

    store = Store(settings)
    store.migrate()
    try:
        rows = [row(f"r{i}") for i in range(64)]
        rows[37] = row("poison")
        out = store_rows(store.write_engine, rows, [picky])
        assert [r.refused is not None for r in out] == [i == 37 for i in range(64)]
        assert all(isinstance(r.id, int) for i, r in enumerate(out) if i != 37)
        # the whole batch, then halves down to the row: 1 + 2 * 6, plus the probe
        assert len(attempts) <= 1 + 2 * 6 + 1, attempts
    finally:
        store.close()
