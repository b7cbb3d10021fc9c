"""The spread of a benchmark's per-round ratios: the median, a confidence interval of
it, and whether that interval shows a change."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    """Ratios of the rounds: their median, lowest and highest."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def text(self) -> str:
        return f"{self.median:.3f} ({min(self.values):.3f}–{max(self.values):.3f})"

    def interval(self, level: float = 0.95) -> tuple[float, float, float]:
        """A distribution-free confidence interval of the median ratio (order
        statistics: the k-th lowest and highest rounds, k as large as keeps the
        coverage at ``level`` or more), and its coverage."""
        ordered = sorted(self.values)
        n = len(ordered)

        def coverage(k: int) -> float:  # P(x(k) <= median <= x(n-k+1))
            return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2 ** n

        k = 1
        while k + 1 <= n // 2 and coverage(k + 1) >= level:
            k += 1
        return ordered[k - 1], ordered[n - k], coverage(k)

    def interval_text(self) -> str:
        low, high, covered = self.interval()
        return f"{low:.3f}–{high:.3f} ({covered:.0%})"


def change(on: Spread, lower_is_better: bool) -> str:
    """Does the confidence interval of on/off's median ratio hold 1 (no change)?
    Below 90 % coverage (fewer than 5 rounds) the interval tells nothing."""
    low, high, covered = on.interval()
    if covered < 0.9:
        return "too few rounds to tell"
    if low <= 1.0 <= high:
        return "no change shown"
    worse = low > 1.0 if lower_is_better else high < 1.0
    return "worse" if worse else "better"
