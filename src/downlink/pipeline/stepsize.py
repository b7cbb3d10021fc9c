"""Job steps sized by a time budget rather than by a fixed number of rows.

A revision step (``reprocess.revise_step``) holds the consumer's cursor row and, on
SQLite, the single write lock: ingestion waits for the whole step. How long a step of
N rows takes depends on the rows (a crash regroup moving every record of a large
group costs far more per row than one that moves none) and on the machine's load,
so a fixed N cannot bound the wait. :class:`StepSizer` sizes each step from the last
one's duration: ``rows * budget / seconds``, growing at most :data:`GROWTH` times a
step, shrinking at once, and always within ``[smallest, largest]``.
"""

from __future__ import annotations

import threading

BUDGET_S = 0.2  # the work one step aims to do while it holds the lock
SMALLEST = 50  # below this, a step's fixed cost (lock, commit) dominates
GROWTH = 2.0  # the most a step grows over the last one
FIRST = 200  # the first step of a new sizer: small, it learns from there


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
        self, largest: int, *, budget_s: float = BUDGET_S, smallest: int = SMALLEST
    ) -> None:
        if largest < 1:
            raise ValueError("a step has at least one row")
        self.largest = largest
        self.smallest = max(1, min(smallest, largest))
        self.budget_s = budget_s
        self._size = max(self.smallest, min(FIRST, largest))
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """The rows the next step reads at most."""
        return self._size

    def took(self, size: int, elapsed_s: float) -> int:
        """A step of ``size`` rows took ``elapsed_s`` seconds: set and return the next size."""
        with self._lock:
            self._size = next_size(
                size, elapsed_s, budget_s=self.budget_s,
                smallest=self.smallest, largest=self.largest,
            )
            return self._size
