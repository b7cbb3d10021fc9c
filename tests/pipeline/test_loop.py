"""The one polling loop of the consumer and job runners: busy rounds go on at once,
idle ones wait for the interval or a wake-up, failing ones back off, stop ends it."""

from __future__ import annotations

import asyncio
import threading
import time

from downlink.pipeline.consumers import ConsumerRunner
from downlink.pipeline.jobrunner import JobRunner
from downlink.pipeline.loop import PollingLoop


class Script(PollingLoop):
    """Rounds that report work, then raise, then idle; records when each ran."""

    def __init__(self, plan: list[str], poll_s: float) -> None:
        super().__init__(poll_s=poll_s, retry_max_s=poll_s * 4)
        self.plan = plan
        self.at: list[tuple[str, float]] = []
        self.prepared = 0

    async def prepare(self) -> None:
        self.prepared += 1
        if self.prepared == 1:
            raise RuntimeError("database down")  # retried before the first round

    async def run_once(self) -> bool:
        what = self.plan.pop(0) if self.plan else "idle"
        self.at.append((what, time.monotonic()))
        if what == "fail":
            raise RuntimeError("database down")
        return what == "busy"


def test_busy_rounds_go_on_failures_back_off_and_a_wake_cuts_the_wait() -> None:
    async def scenario() -> Script:
        loop = Script(["busy", "busy", "idle", "fail", "fail", "fail", "idle"], poll_s=0.2)
        loop.start()
        while len(loop.at) < 7:
            await asyncio.sleep(0.01)
        # An idle loop waits poll_s; a wake from another thread cuts it short.
        await asyncio.sleep(0.05)
        before = len(loop.at)
        woken = time.monotonic()
        threading.Thread(target=loop.wake).start()
        while len(loop.at) == before:
            await asyncio.sleep(0.001)
        assert loop.at[-1][1] - woken < 0.15
        await loop.stop()
        return loop

    loop = asyncio.run(scenario())
    assert loop.prepared == 2
    kinds = [w for w, _ in loop.at]
    assert kinds[:7] == ["busy", "busy", "idle", "fail", "fail", "fail", "idle"]
    times = [t for _, t in loop.at]
    assert times[1] - times[0] < 0.15 and times[2] - times[1] < 0.15  # busy: at once
    gaps = [times[i + 1] - times[i] for i in (3, 4, 5)]  # after 1, 2, 3 failures
    assert gaps[0] >= 0.19 and gaps[1] >= 0.39 and gaps[2] >= 0.79, gaps


def test_both_runners_are_the_one_loop() -> None:
    assert isinstance(ConsumerRunner(None, []), PollingLoop)
    assert isinstance(JobRunner(None, kinds=[], drivers=[]), PollingLoop)
    # Nothing to run: a consumer runner without consumers never starts a task.
    assert not ConsumerRunner(None, []).enabled()
    assert not JobRunner(None, poll_s=0, kinds=[], drivers=[]).enabled()
