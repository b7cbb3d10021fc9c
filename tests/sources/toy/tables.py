"""The toy source's own table, in a MetaData of its own."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Double, Integer, MetaData, Table, Text

Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

toy_items = Table(
    "toy_items",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("ts_reception", Double, nullable=False),
)
