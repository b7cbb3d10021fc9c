"""Job steps sized by a time budget rather than by a fixed number of rows.

A revision step (``reprocess.revise_step``) holds the consumer's cursor row and, on
SQLite, the single write lock: ingestion waits for the whole step. How long a step of
N rows takes depends on the rows (a crash regroup moving every record of a large
group costs far more per row than one that moves none) and on the machine's load,
so a fixed N cannot bound the wait. :class:`StepSizer` sizes each step from the last
one's duration: ``rows * budget / seconds``, growing at most :data:`GROWTH` times a
step, shrinking at once, and always within ``[smallest, largest]``.

The budget is :data:`BUDGET_S` on SQLite, where the step holds the one write lock and
collector posts wait for it; on PostgreSQL, where posts take row locks and only the
live consumer of the revised rows waits, :data:`SHARED_BUDGET_S`: a longer step costs
ingestion nothing there, while every step has a fixed cost (a few dozen statements,
each a round trip) that small steps would multiply.

A step's duration is its work (:func:`clock`): the CPU time of the thread running it,
so the size does not collapse when other processes load the machine (every thread,
the posts' too, is slowed alike then, and steps too small to be efficient would only
add work: timed by the wall clock at load average 20-25 on 2 cores, steps fell to
100-200 rows and the job's CPU doubled). On SQLite that is the database's work too
(it runs in that thread); on PostgreSQL it is the client's side of it, which the
server's follows (the same statements), and only the live consumer waits there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

BUDGET_S = 0.2  # the work one step aims to do while it holds SQLite's write lock
SHARED_BUDGET_S = 1.0  # the same on a database with row locks (PostgreSQL)
SMALLEST = 100  # below this, a step's fixed cost (its statements, commit) dominates
GROWTH = 2.0  # the most a step grows over the last one
FIRST = 200  # the first step of a new sizer: small, it learns from there


def budget_for(dialect: str) -> float:
    """The time budget of a step on a database of this dialect."""
    return BUDGET_S if dialect == "sqlite" else SHARED_BUDGET_S


def clock(dialect: str) -> Callable[[], float]:
    """The clock a step's duration is read from (on a database of this dialect): the
    running thread's CPU time."""
    del dialect  # the same on both, for now: see the module's docstring
    return time.thread_time


def next_size(
    size: int, elapsed_s: float, *, budget_s: float, smallest: int, largest: int
) -> int:
    """The rows of the next step after one of ``size`` rows took ``elapsed_s`` seconds."""
    low = max(1, min(smallest, largest))
    if elapsed_s <= 0:
        wanted = size * GROWTH
    else:
        wanted = min(size * budget_s / elapsed_s, size * GROWTH)
    return max(low, min(largest, int(wanted)))


class StepSizer:
    """The size of the next step of the jobs of one kind, learnt from the last step.

    Jobs of one lane run one at a time, so one size per kind is enough; a new job
    starts from the size the last one ended with, a new process from :data:`FIRST`.
    The size is kept in memory only: a job's parameters are not written by its steps,
    so that an edit merging its items into them can never be overwritten.
    """

    def __init__(
        self, largest: int, *, budget_s: float | None = None, smallest: int = SMALLEST
    ) -> None:
        if largest < 1:
            raise ValueError("a step has at least one row")
        self.largest = largest
        self.smallest = max(1, min(smallest, largest))
        self.budget_s = budget_s  # None: budget_for the database's dialect
        self._size = max(self.smallest, min(FIRST, largest))
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """The rows the next step reads at most."""
        return self._size

    def took(self, size: int, elapsed_s: float, dialect: str = "sqlite") -> int:
        """A step of ``size`` rows took ``elapsed_s`` seconds on a database of
        ``dialect``: set and return the next size."""
        budget = budget_for(dialect) if self.budget_s is None else self.budget_s
        with self._lock:
            self._size = next_size(
                size, elapsed_s, budget_s=budget,
                smallest=self.smallest, largest=self.largest,
            )
            return self._size
