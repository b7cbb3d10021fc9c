"""The toy source's own tables, in a MetaData of their own."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Double, Integer, MetaData, Table, Text

Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

# Followed by the toy consumer: ids never reused on SQLite (AUTOINCREMENT); on
# PostgreSQL its migration adds the txid column (downlink.store.follow).
toy_items = Table(
    "toy_items",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("ts_reception", Double, nullable=False),
    sqlite_autoincrement=True,
)

# Derived by the toy consumer: items per UTC day and name.
toy_daily = Table(
    "toy_daily",
    metadata,
    Column("day", Integer, primary_key=True, autoincrement=False),
    Column("name", Text, primary_key=True),
    Column("count", BigInteger, nullable=False),
)
