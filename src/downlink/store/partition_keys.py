"""The retransmission keys of a partitioned ``records``: the unpartitioned ``records_keys``.

A partitioned table's unique keys must contain its partition key, so ``dedup_key``
cannot be unique on a partitioned ``records`` (store/partitions.py). Looking a batch's
keys up in the partitioned table itself costs a probe of every partition's
``dedup_key`` index, planned afresh each batch: with seven partitions, 368 us of
planning and 278 us of execution per batch, against 150 and 74 on one table
(docs/performance.md, "Read replica and monthly partitions"). So on a partitioned
``records`` the keys live in one plain table, ``records_keys (dedup_key PRIMARY KEY,
ts_reception)``, and the writer (store/inserts.py):

1. **claims** the batch's keys, in sorted order, with ``INSERT … ON CONFLICT DO
   NOTHING RETURNING dedup_key`` on ``records_keys`` alone: a key returned is new and
   now belongs to this transaction (a second worker process claiming the same key
   waits for this transaction on the primary key's entry, then finds it taken);
2. reads the stored rows of the keys it could not claim (retransmissions: rare) from
   ``records`` by ``dedup_key``; the only statement of the batch that probes every
   partition, and only when there is a retransmission.

A key whose record is gone (deleted by hand) is stored again as new, and its key row
takes the new reception time.

The keys follow the records out: a statement-level ``AFTER DELETE`` trigger on
``records`` deletes the keys of the rows it deleted (retention's batch purge), and a
partition dropped whole takes its keys with it (:func:`forget_range`, the keys' own
``ts_reception`` index: a delete of narrow rows, not of the records).

The keys of the rows already stored are copied while ingestion goes on (:func:`backfill`),
in chunks of ids, from one horizon in commit order (store/follow.py: every transaction
with a txid below it had ended), then again from each pass's horizon (by the follow
index), and a last time inside the swap's exclusive lock (:func:`catch_up`), so the
table holds every key when the first batch claims against it.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Engine, text

TABLE = "records_keys"
CHUNK = 50_000

CREATE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (dedup_key varchar(64) PRIMARY KEY, "
    "ts_reception double precision NOT NULL)",
    f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_ts_reception ON {TABLE} (ts_reception)",
    "CREATE OR REPLACE FUNCTION records_keys_forget() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN "
    f"DELETE FROM {TABLE} k USING gone g WHERE k.dedup_key = g.dedup_key; "
    "RETURN NULL; END $$",
)


def trigger(table: str) -> str:
    """The statement that makes deletes on ``table`` (the partitioned parent) forget keys."""
    return (
        f"CREATE TRIGGER records_keys_forget AFTER DELETE ON {table} "
        "REFERENCING OLD TABLE AS gone FOR EACH STATEMENT "
        "EXECUTE FUNCTION records_keys_forget()"
    )


# The claim: the keys returned are new (and this transaction's until it ends).
CLAIM = (
    f"INSERT INTO {TABLE} (dedup_key, ts_reception) "
    "SELECT e->>0, CAST(e->>1 AS double precision) "
    "FROM json_array_elements(CAST(%s AS json)) AS e ORDER BY 1 "
    "ON CONFLICT DO NOTHING RETURNING dedup_key"
)
# A key taken again by a record stored anew (its old record gone).
RETAKE = (
    f"UPDATE {TABLE} k SET ts_reception = CAST(e->>1 AS double precision) "
    "FROM json_array_elements(CAST(%s AS json)) AS e WHERE k.dedup_key = e->>0"
)


def forget_range(conn: Connection, lower: float | None, upper: float) -> int:
    """Forget the keys of records received in ``[lower, upper)`` (a dropped partition)."""
    where = "ts_reception < :upper" + ("" if lower is None else " AND ts_reception >= :lower")
    result = conn.execute(text(f"DELETE FROM {TABLE} WHERE {where}"),
                          {"lower": lower, "upper": upper})
    return int(result.rowcount or 0)


def _horizon(conn: Connection) -> int:
    """Every transaction with a txid below this one had ended when it was read."""
    found = conn.execute(text(
        "SELECT CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS text) AS bigint)"
    )).scalar_one()
    return int(found)


def _copy(conn: Connection, table: str, where: str, params: dict[str, int]) -> int:
    """Copy the keys of ``table``'s rows matching ``where`` (those not there yet)."""
    result = conn.execute(text(
        f"INSERT INTO {TABLE} (dedup_key, ts_reception) SELECT dedup_key, ts_reception "
        f"FROM {table} WHERE {where} AND dedup_key IS NOT NULL ON CONFLICT DO NOTHING"
    ), params)
    return int(result.rowcount or 0)


def backfill(engine: Engine, table: str, say: Callable[[str], None]) -> int:
    """Copy the keys of every row of ``table`` into ``records_keys`` (made with
    :data:`CREATE` first) while it takes writes; return the horizon from which
    :func:`catch_up` copies the rest."""
    with engine.begin() as conn:
        horizon = _horizon(conn)
        top = conn.execute(text(f"SELECT COALESCE(max(id), 0) FROM {table}")).scalar_one()
    after, copied = 0, 0
    while after < int(top):
        with engine.begin() as conn:
            copied += _copy(conn, table, "id > :a AND id <= :b",
                            {"a": after, "b": after + CHUNK})
        after += CHUNK
        say(f"copied the keys of ids up to {min(after, int(top)):,} ({copied:,} keys)")
    # Rows committed meanwhile (below the chunk already done, or above ``top``).
    for _ in range(3):
        with engine.begin() as conn:
            next_horizon = _horizon(conn)
            copied = catch_up(conn, table, horizon)
        horizon = next_horizon
        if copied < 1000:
            break
    return horizon


def catch_up(conn: Connection, table: str, horizon: int) -> int:
    """Copy the keys of ``table``'s rows written at or after ``horizon`` (txid order,
    by the follow index); the last time inside the swap's exclusive lock."""
    return _copy(conn, table,
                 "COALESCE(txid, '0'::xid8) >= CAST(CAST(:h AS text) AS xid8)",
                 {"h": horizon})
