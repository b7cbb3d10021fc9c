"""The ClickHouse shippers under full ingest load: their lag, and what they cost ingestion.

For each database, in one run and with the same load generator (wrk at full rate,
``load.py``: single-record ``POST /v2/collector``), two servers of one worker each on
fresh databases:

* without the analytics store;
* with ``DOWNLINK_ANALYTICS_URL=chdb://…`` (ClickHouse in the server's process, one
  worker as chdb requires), its shippers (``analytics_*`` consumers) copying every
  committed record while wrk posts.

While wrk runs, every consumer's lag (the age of the oldest record it has not handled,
``/consumers``'s ``lag_seconds``) is sampled from the database every 0.2 s. The table
gives records/s and latency, the ingest ratio of the run with the shippers to the run
without, the shippers' lag p99 and maximum, the Clear Linux consumers' lag p99 beside
them, the seconds until every consumer had caught up once the load stopped, and the
records found in ClickHouse afterwards (``FINAL``) against those stored.

    python bench/clickhouse_lag.py [--seconds 30] [--connections 64]
                                   [--databases sqlite,postgresql] [--no-write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, table, write_section  # noqa: E402
from load import LoadResult, need_wrk, run_wrk  # noqa: E402

from downlink.analytics.client import connect  # noqa: E402
from downlink.analytics.shipper import shippers  # noqa: E402
from downlink.pipeline.consumers import bind, status  # noqa: E402
from downlink.settings import Settings  # noqa: E402
from downlink.store.engine import _normalise, make_engine  # noqa: E402
from downlink.store.tables import records  # noqa: E402
from downlink.testing.live import LiveServer  # noqa: E402
from downlink.testing.postgres import TempPostgres  # noqa: E402

WARM_UP_S = 5
SHIPPER = "analytics_"
HEADERS = ["server", "shippers", "records/s", "p50 ms", "p99 ms", "errors", "ingest ratio",
           "shippers' lag p99 s", "max s", "other consumers' lag p99 s", "caught up s",
           "records in ClickHouse / stored"]


def _p99(samples: list[float]) -> float:
    if len(samples) < 2:
        return samples[0] if samples else 0.0
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


@dataclass
class Sampler:
    """Every ``every`` s while ``recording``: the worst lag (seconds) of the shippers
    and of the other consumers, read from the database as ``/consumers`` does."""

    settings: Settings
    every: float = 0.2
    recording: bool = False
    shippers: list[float] = field(default_factory=list)
    others: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        # The shippers are bound from the settings without opening ClickHouse.
        self.bounds = bind(self.settings.registry, shippers(self.settings))
        self.engine = make_engine(self.settings)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def lags(self) -> list[dict[str, Any]]:
        """Each consumer's state."""
        with self.engine.connect() as conn:
            return status(conn, self.bounds)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            if not self.recording:
                continue
            found = self.lags()
            ours = [float(c["lag_seconds"]) for c in found if c["name"].startswith(SHIPPER)]
            rest = [float(c["lag_seconds"]) for c in found
                    if not c["name"].startswith(SHIPPER)]
            if ours:
                self.shippers.append(max(ours))
            self.others.append(max(rest, default=0.0))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.engine.dispose()

    def caught_up_s(self, timeout: float = 300.0) -> float:
        """Seconds until no consumer has a record left (after the load stopped)."""
        started = time.monotonic()
        while (any(int(c["lag_records"]) for c in self.lags())
               and time.monotonic() - started < timeout):
            time.sleep(0.05)
        return time.monotonic() - started


def stored(url: str) -> int:
    """Records in the database."""
    engine = create_engine(_normalise(url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(records)).scalar_one())
    finally:
        engine.dispose()


@dataclass
class Run:
    """One server's measured run."""

    db: str
    analytics: str | None
    load: LoadResult
    shippers_p99: float
    shippers_max: float
    others_p99: float
    caught_up_s: float
    stored: int


def run_one(db: str, url: str, analytics: str | None, args: argparse.Namespace,
            log: Path) -> Run:
    """A server on ``url`` (with the analytics store ``analytics``), loaded by wrk."""
    env = {"DOWNLINK_ANALYTICS_URL": analytics} if analytics else {}
    settings = Settings(database_url=url, analytics_url=analytics or "")
    server = LiveServer(url, workers=1, env=env, log=log).start()
    try:
        with Sampler(settings) as sampler:
            run_wrk(server.url + "/v2/collector", WARM_UP_S, args.connections)
            sampler.recording = True
            try:
                res = run_wrk(server.url + "/v2/collector", args.seconds, args.connections)
            finally:
                sampler.recording = False
            drain = sampler.caught_up_s()
    finally:
        server.stop()
    return Run(db, analytics, res, _p99(sampler.shippers), max(sampler.shippers, default=0.0),
               _p99(sampler.others), drain, stored(url))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--no-write", action="store_true", help="do not touch the docs")
    args = parser.parse_args()
    need_wrk()
    about = machine()
    databases = args.databases.split(",")
    runs: list[Run] = []
    pg = TempPostgres(fsync=True).start() if "postgresql" in databases else None
    with tempfile.TemporaryDirectory(prefix="downlink-chlag-") as name:
        tmp = Path(name)
        try:
            for db in databases:
                for shipped in (False, True):
                    label = f"{db}_{'ch' if shipped else 'plain'}"
                    if db == "sqlite":
                        url = f"sqlite:///{tmp / f'{label}.db'}"
                    else:
                        assert pg is not None
                        url = pg.create_database(label)
                    analytics = f"chdb://{tmp / 'chdb'}?database={label}" if shipped else None
                    runs.append(run_one(db, url, analytics, args, tmp / "server.log"))
                    print(f"{label}: {runs[-1].load.per_second:,.0f} records/s, shippers' "
                          f"lag p99 {runs[-1].shippers_p99:.2f} s", flush=True)
        finally:
            if pg is not None:
                pg.stop()
        # Every server has stopped: this process may open the chdb folder now.
        shipped_rows: dict[str, int] = {}
        if any(r.analytics for r in runs):
            ch = connect(f"chdb://{tmp / 'chdb'}")
            for r in runs:
                if r.analytics:
                    database = r.analytics.rsplit("=", 1)[1]
                    shipped_rows[r.db] = int(ch.query(
                        f"SELECT count() FROM {database}.records FINAL")[0][0])
            ch.close()
    rows: list[list[object]] = []
    plain = {r.db: r for r in runs if not r.analytics}
    for r in runs:
        base = plain.get(r.db)
        ratio = r.load.per_second / base.load.per_second if base and base.load.per_second else 0
        rows.append([
            f"downlink {r.db}", "chdb" if r.analytics else "none", round(r.load.per_second),
            r.load.p50_ms, r.load.p99_ms, r.load.status_errors + r.load.socket_errors,
            f"{ratio:.2f}", f"{r.shippers_p99:.2f}" if r.analytics else "-",
            f"{r.shippers_max:.2f}" if r.analytics else "-", f"{r.others_p99:.2f}",
            f"{r.caught_up_s:.2f}",
            f"{shipped_rows[r.db]:,} / {r.stored:,}" if r.analytics else "-",
        ])
    result = table(HEADERS, rows)
    print(result)
    body = (
        "## ClickHouse: the shippers' lag under full ingest load\n\n"
        f"`python bench/clickhouse_lag.py --seconds {args.seconds:g} --connections "
        f"{args.connections} --databases {args.databases}` — {about}\n\n"
        f"wrk, 1 thread, {args.connections} keep-alive connections, {args.seconds:g} s per "
        f"run after a {WARM_UP_S} s warm-up, each request one `POST /v2/collector`; one "
        "server worker on a fresh database per row (PostgreSQL with fsync on, SQLite "
        "synchronous=FULL). *shippers*: chdb is ClickHouse in the server's process "
        "(`DOWNLINK_ANALYTICS_URL=chdb://…`), its `analytics_*` consumers shipping while "
        "wrk posts. *ingest ratio*: records/s against the same database's run without "
        "shippers. *lag*: the age of the oldest record a consumer had not handled, the "
        "worst of the group, sampled every 0.2 s during the measured run; *caught up*: "
        "seconds until every consumer had handled every record once the load stopped; "
        "the last column counts the records in ClickHouse (`FINAL`) after that.\n\n"
        + result
    )
    if not args.no_write:
        write_section("clickhouse-lag", body)


if __name__ == "__main__":
    main()
