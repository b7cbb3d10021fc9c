"""HyperLogLog sketches of crash-group machines: estimates, unions and storage."""

from __future__ import annotations

import zlib

import numpy as np
from alembic import command
from sqlalchemy import Engine, create_engine, text

from downlink.store import migrate, sketch


def _sketch(ids: list[str]) -> bytes:
    regs = bytearray(sketch.M)
    sketch.apply(regs, sketch.updates_of(ids))
    return sketch.encode(regs)


def _ids(start: int, stop: int) -> list[str]:
    return [f"{i:032x}" for i in range(start, stop)]


def test_empty_sketch_counts_nothing() -> None:
    assert sketch.estimate(sketch.registers(None)) == 0
    assert sketch.estimate(sketch.union([])) == 0


def test_small_sets_are_counted_exactly() -> None:
    for n in (1, 2, 10, 50):
        assert sketch.estimate(sketch.union([_sketch(_ids(0, n))])) == n


def test_large_sets_within_the_expected_error() -> None:
    for n in (5_000, 60_000):
        got = sketch.estimate(sketch.union([_sketch(_ids(0, n))]))
        assert abs(got - n) / n < 0.05, (n, got)


def test_union_of_overlapping_sketches_counts_each_machine_once() -> None:
    days = [_sketch(_ids(d * 1000, d * 1000 + 3000)) for d in range(10)]  # 12,000 machines
    got = sketch.estimate(sketch.union(days))
    assert abs(got - 12_000) / 12_000 < 0.05
    assert sketch.estimate(sketch.union(days[:1] * 5)) == sketch.estimate(sketch.union(days[:1]))


def test_updates_only_raise_registers() -> None:
    regs = bytearray(sketch.M)
    updates = sketch.updates_of(_ids(0, 20))
    assert sketch.apply(regs, updates) is True
    assert sketch.apply(regs, updates) is False  # adding the same machines changes nothing
    assert sketch.registers(sketch.encode(regs)) == regs


def test_few_machines_are_stored_sparse_and_many_as_registers() -> None:
    few, many = _sketch(_ids(0, 10)), _sketch(_ids(0, 5_000))
    assert few[:1] == sketch.SPARSE and len(few) == 1 + 3 * 10
    assert many[:1] == sketch.DENSE and len(many) == 1 + sketch.M
    assert sketch.encode(bytes(sketch.M)) == sketch.SPARSE  # the empty sketch


def test_union_is_the_same_whatever_the_encodings() -> None:
    parts = [_ids(d * 700, d * 700 + (300 if d % 2 else 2000)) for d in range(6)]
    regs = [sketch.registers(_sketch(ids)) for ids in parts]
    zlibbed = [zlib.compress(bytes(r), 1) for r in regs]  # the encoding before 0017
    assert [sketch.registers(z) for z in zlibbed] == regs
    expected = np.maximum.reduce([np.frombuffer(bytes(r), dtype=np.uint8) for r in regs])
    current = [sketch.encode(r) for r in regs]
    assert {b[:1] for b in current} == {sketch.SPARSE, sketch.DENSE}
    for blobs in (current, zlibbed, current[:3] + zlibbed[3:]):
        assert (sketch.union(blobs) == expected).all()
    n = len(set().union(*parts))
    assert abs(sketch.estimate(expected) - n) / n < 0.05


def _stored(engine: Engine) -> dict[tuple[object, ...], bytes]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT day, guilty_id, build, registers FROM rollup_guilty_build_sketch")
        ).all()
    return {tuple(r[:3]): bytes(r[3]) for r in rows}


def test_migration_reencodes_stored_sketches_and_back(empty_db_url: str) -> None:
    engine = create_engine(empty_db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        migrate.upgrade(engine, "0012_guilty_machine_totals")
        regs = {
            (20000 + d, 1, f"3{d}"): sketch.registers(_sketch(_ids(0, n)))
            for d, n in enumerate((1, 40, 3000))
        }
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO rollup_guilty_build_sketch VALUES (:d, :g, :b, :r)"),
                [
                    {"d": d, "g": g, "b": b, "r": zlib.compress(bytes(r), 1)}
                    for (d, g, b), r in regs.items()
                ],
            )
        migrate.upgrade(engine)
        after = _stored(engine)
        assert [after[k][:1] for k in regs] == [sketch.SPARSE, sketch.SPARSE, sketch.DENSE]
        assert {k: sketch.registers(v) for k, v in after.items()} == regs
        cfg = migrate.alembic_config(engine)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0012_guilty_machine_totals")
        back = _stored(engine)
        assert {k: bytes(zlib.decompress(v)) for k, v in back.items()} == {
            k: bytes(r) for k, r in regs.items()
        }
    finally:
        engine.dispose()
