"""HyperLogLog sketches of crash-group machines: estimates, unions and storage."""

from __future__ import annotations

from downlink.store import sketch


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
