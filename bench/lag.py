"""The consumers' lag sampled from the database while a benchmark loads a server.

Shared by ``ingest.py`` and ``bulk.py``: every ``every`` seconds the age of the oldest
row the furthest-behind consumer has not handled (``downlink.pipeline.consumers.status``,
what ``/consumers`` shows), read from the cursors, wherever the consumers run.
"""

from __future__ import annotations

import statistics
import threading
import time

from downlink.pipeline.consumers import bind, status
from downlink.settings import Settings
from downlink.store.engine import make_engine


class LagSampler:
    """Samples the worst consumer lag (seconds) of a database every ``every`` s."""

    def __init__(self, database_url: str, every: float = 0.2) -> None:
        settings = Settings(database_url=database_url)
        self.bounds = bind(settings.registry)
        self.engine = make_engine(settings)
        self.every = every
        self.samples: list[float] = []
        self.recording = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def lag(self) -> tuple[int, float]:
        """Records and seconds behind, of the furthest-behind consumer."""
        with self.engine.connect() as conn:
            found = status(conn, self.bounds)
        return (max((int(c["lag_records"]) for c in found), default=0),
                max((float(c["lag_seconds"]) for c in found), default=0.0))

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            if self.recording:
                self.samples.append(self.lag()[1])

    def __enter__(self) -> LagSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.engine.dispose()

    def catch_up_s(self, timeout: float = 120.0) -> float:
        """Seconds until no consumer has a record left (after the load stopped)."""
        started = time.monotonic()
        while self.lag()[0] and time.monotonic() - started < timeout:
            time.sleep(0.05)
        return time.monotonic() - started

    def p99(self) -> float:
        """The 99th percentile of the recorded samples."""
        if len(self.samples) < 2:
            return self.samples[0] if self.samples else 0.0
        return statistics.quantiles(self.samples, n=100, method="inclusive")[98]
