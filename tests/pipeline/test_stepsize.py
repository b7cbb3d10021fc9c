"""Job steps sized by a time budget: the next size follows the last step's duration and
never leaves its bounds."""

from __future__ import annotations

import time

import pytest

from downlink.pipeline.stepsize import (
    BUDGET_S,
    GROWTH,
    SHARED_BUDGET_S,
    StepSizer,
    budget_for,
    clock,
    next_size,
)


def test_a_step_over_budget_shrinks_in_proportion_and_one_under_grows_at_most_twofold() -> None:
    bounds = {"budget_s": 0.2, "smallest": 50, "largest": 10_000}
    assert next_size(2000, 0.8, **bounds) == 500
    assert next_size(2000, 0.2, **bounds) == 2000
    assert next_size(1000, 0.1, **bounds) == 2000
    assert next_size(1000, 0.001, **bounds) == int(1000 * GROWTH)
    assert next_size(1000, 0.0, **bounds) == int(1000 * GROWTH)


@pytest.mark.parametrize("elapsed", [0.0, 1e-9, 0.01, 0.2, 3.0, 1e6])
@pytest.mark.parametrize("size", [1, 49, 50, 777, 10_000, 50_000])
def test_the_next_size_stays_within_its_bounds(size: int, elapsed: float) -> None:
    found = next_size(size, elapsed, budget_s=0.2, smallest=50, largest=10_000)
    assert 50 <= found <= 10_000


def test_a_sizer_learns_from_each_step_within_bounds() -> None:
    sizer = StepSizer(2000, budget_s=0.2, smallest=50)
    assert 50 <= sizer.size <= 2000
    seen = []
    for elapsed in [0.001] * 8:  # cheap steps: grows to the largest, no further
        seen.append(sizer.took(sizer.size, elapsed))
    assert seen[-1] == 2000 and seen == sorted(seen)
    assert sizer.took(2000, 4.0) == 100  # 20 times the budget: 20 times smaller
    assert sizer.took(100, 60.0) == 50  # never below the smallest
    assert sizer.size == 50


def test_a_consumer_batch_smaller_than_the_smallest_step_bounds_both() -> None:
    sizer = StepSizer(7, smallest=50)
    assert sizer.size == 7
    assert sizer.took(7, 0.0) == 7
    assert sizer.took(7, 100.0) == 7
    with pytest.raises(ValueError):
        StepSizer(0)


def test_sqlite_steps_aim_at_the_shorter_budget_the_write_lock_needs() -> None:
    assert budget_for("sqlite") == BUDGET_S < SHARED_BUDGET_S == budget_for("postgresql")
    sqlite, pg = StepSizer(10_000, smallest=50), StepSizer(10_000, smallest=50)
    assert sqlite.took(1000, 1.0, "sqlite") == int(1000 * BUDGET_S)
    assert pg.took(1000, 1.0, "postgresql") == int(1000 * SHARED_BUDGET_S)


def test_steps_are_timed_by_their_threads_cpu_time() -> None:
    assert clock("sqlite") is time.thread_time
    assert clock("postgresql") is time.thread_time
