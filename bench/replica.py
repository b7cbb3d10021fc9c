"""Ingest and dashboards with a read replica and with monthly partitions, against neither.

    python bench/replica.py [--records 100000] [--seconds 10] [--connections 32]

One PostgreSQL primary (fsync=on) with a streaming replica made by ``pg_basebackup -R``.
The same generated records (``bench/dashboards.py``'s generator and processors) are
loaded twice: into a plain database and into one whose ``records`` was partitioned by
month before the load (so the 60 days of records spread over three monthly partitions).
Each database is copied (``CREATE DATABASE … TEMPLATE``) for each configuration:

* **plain**: ``DATABASE_URL`` only, unpartitioned (the baseline);
* **replica**: ``DATABASE_READ_URL`` names the replica;
* **partitioned**: partitioned ``records``, no replica;
* **both**: partitioned, reads on the replica.

The configurations run interleaved, ``--rounds`` times, keeping each figure's best.
For each, a one-worker ``downlink serve``: single-record posts with wrk (records/s,
p99), then the dashboards (each page timed five times after one warm-up: median), then
the dashboards again while wrk posts (the mixed run: the pages' median and the ingest
rate beside them). Ratios are against *plain* in the same run. The section
``replica`` of docs/performance.md is replaced.

Beside the times, what each step cost in CPU (``bench/proc_cpu.py``: every thread's
time on a CPU and time waiting for one, from ``/proc/*/task/*/schedstat``): of the
server's process, of the primary's client backends and its other processes, of the
replica's client backends and of its WAL replay (the ``startup`` process and the
``walreceiver``). Per page for the pages (the server and the backends that answered
them: on the replica or the primary), per record for the ingest, and for the pages
under ingest the replica's replay CPU beside the CPU per page of the replica's
backends, so that a slower page under ingest shows whether the replica's pages cost
more or whether the replay took cores the pages waited for. Before the quiet pages the
consumers have caught up and the replica has replayed the ingest (so that neither
counts as a page's cost). CPU figures are the median of the rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, table, write_section  # noqa: E402
from dashboards import load  # noqa: E402
from load import LoadResult, need_wrk, run_wrk  # noqa: E402
from proc_cpu import Cpu, Snapshot, between, postmaster_pid, snapshot  # noqa: E402
from spread import Spread, change  # noqa: E402

from downlink.settings import Settings  # noqa: E402
from downlink.store import partitions  # noqa: E402
from downlink.store.database import Store  # noqa: E402
from downlink.testing.consumers import wait_caught_up  # noqa: E402
from downlink.testing.live import LiveServer  # noqa: E402
from downlink.testing.postgres import TempPostgres  # noqa: E402

PAGES = ("/stats", "/builds", "/crashes", "/population", "/mce", "/records",
         "/api/records?limit=100", "/crashes.json", "/stats.json")
ROUNDS = 5
# (name, template database, pages on the replica); "plain again" is plain once more:
# the placebo whose ratio to plain is the noise of the run.
CONFIGS = [("plain", "tpl_plain", False), ("replica", "tpl_plain", True),
           ("partitioned", "tpl_parted", False), ("both", "tpl_parted", True),
           ("plain again", "tpl_plain", False)]
IDLE_S = 3.0  # the idle spell measured before the quiet pages


@dataclass
class Figures:
    ingest: LoadResult
    pages_ms: float
    mixed_pages_ms: float
    mixed_ingest: LoadResult
    # CPU by role (bench/proc_cpu.py) of each step, and the pages requested in it.
    ingest_cpu: dict[str, Cpu]
    pages_cpu: dict[str, Cpu]
    pages_requested: int
    pages_wall_s: float
    # An idle spell just before the quiet pages (consumers and job runner polling):
    # its rate is taken off the pages' CPU.
    idle_cpu: dict[str, Cpu]
    idle_wall_s: float
    mixed_cpu: dict[str, Cpu]
    mixed_pages_requested: int
    mixed_wall_s: float
    # Queries the replica's replay cancelled, and reads that fell back to the primary.
    conflicts: int
    fallbacks: int


def _sql(pg: TempPostgres, db: str, statement: str) -> None:
    with psycopg.connect(f"host=127.0.0.1 port={pg.port} user=postgres dbname={db}",
                         autocommit=True) as conn:
        conn.execute(statement)


def _pages(url: str, rounds: int = ROUNDS) -> float:
    """Median over pages of each page's median time (ms); each page is asked
    ``1 + rounds`` times (the first is not timed)."""
    per_page: list[float] = []
    with httpx.Client(base_url=url, timeout=120) as client:
        for page in PAGES:
            assert client.get(page).status_code == 200, page
            times = []
            for _ in range(rounds):
                t = time.perf_counter()
                r = client.get(page)
                times.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, page
            per_page.append(statistics.median(times))
    return statistics.median(per_page)


def _conflicts(replica: TempPostgres) -> int:
    """Queries cancelled on the replica by its replay so far (every database)."""
    with psycopg.connect(f"host=127.0.0.1 port={replica.port} user=postgres dbname=postgres",
                         autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(confl_tablespace + confl_lock + confl_snapshot"
            " + confl_bufferpin + confl_deadlock), 0) FROM pg_stat_database_conflicts"
        ).fetchone()
    return int(row[0]) if row else 0


def _fallbacks(log: Path) -> int:
    """Reads the server logged as failed on the replica and run on the primary."""
    try:
        return log.read_text(errors="replace").count("read replica failed a read")
    except OSError:
        return 0


def _wait_replica(primary: TempPostgres, replica: TempPostgres) -> None:
    with psycopg.connect(f"host=127.0.0.1 port={primary.port} user=postgres dbname=postgres",
                         autocommit=True) as conn:
        target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
    assert target is not None
    deadline = time.monotonic() + 300
    with psycopg.connect(f"host=127.0.0.1 port={replica.port} user=postgres dbname=postgres",
                         autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn",
                               (target[0],)).fetchone()
            if row and row[0]:
                return
            time.sleep(0.2)
    raise RuntimeError("the replica did not catch up")


def run_config(primary: TempPostgres, replica: TempPostgres, template: str, name: str,
               read_replica: bool, args: argparse.Namespace, log: Path) -> Figures:
    _sql(primary, "postgres", f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    _wait_replica(primary, replica)
    env = {"DATABASE_READ_URL": replica.url(name)} if read_replica else {}
    server = LiveServer(primary.url(name), env=env, log=log).start()
    assert server.proc is not None
    clusters = {"primary": postmaster_pid(primary.datadir),
                "replica": postmaster_pid(replica.datadir)}

    def shot() -> Snapshot:
        assert server.proc is not None
        return snapshot(server.proc.pid, clusters)

    conflicts, fallbacks = _conflicts(replica), _fallbacks(log)
    try:
        before = shot()
        ingest = run_wrk(server.url + "/v2/collector", args.seconds, args.connections)
        ingest_cpu = between(before, shot())
        wait_caught_up(server.url, timeout=300)
        _wait_replica(primary, replica)
        before, started = shot(), time.perf_counter()
        time.sleep(IDLE_S)
        idle_cpu, idle_wall = between(before, shot()), time.perf_counter() - started
        before, started = shot(), time.perf_counter()
        pages = _pages(server.url)
        pages_cpu, pages_wall = between(before, shot()), time.perf_counter() - started
        mixed: list[LoadResult] = []
        loader = threading.Thread(target=lambda: mixed.append(run_wrk(
            server.url + "/v2/collector", args.seconds, args.connections)))
        loader.start()
        time.sleep(1.0)
        before, started = shot(), time.perf_counter()
        mixed_pages = _pages(server.url, rounds=3)
        mixed_cpu = between(before, shot())
        mixed_wall = time.perf_counter() - started
        loader.join()
    finally:
        server.stop()
    conflicts, fallbacks = _conflicts(replica) - conflicts, _fallbacks(log) - fallbacks
    return Figures(ingest, pages, mixed_pages, mixed[0], ingest_cpu, pages_cpu,
                   len(PAGES) * (1 + ROUNDS), pages_wall, idle_cpu, idle_wall, mixed_cpu,
                   len(PAGES) * (1 + 3), mixed_wall, conflicts, fallbacks)


def _times(figures: list[Figures]) -> tuple[LoadResult, float, float, LoadResult]:
    """The best of the rounds' times, figure by figure (the machine is shared: noise
    only slows): ingest, pages ms, pages ms under ingest, ingest beside the pages."""
    return (max((f.ingest for f in figures), key=lambda r: r.per_second),
            min(f.pages_ms for f in figures), min(f.mixed_pages_ms for f in figures),
            max((f.mixed_ingest for f in figures), key=lambda r: r.per_second))


def _run(cpu: dict[str, Cpu], *roles: str) -> float:
    """CPU seconds of ``roles`` (all of them when none is named)."""
    return sum(c.run_s for role, c in cpu.items() if not roles or role in roles)


REPLAY = ("replica replay", "replica walreceiver")
PRIMARY_OTHER = ("primary background", "primary walsender")


def _page_cost(f: Figures) -> list[float]:
    """CPU ms per quiet page: server, primary backends, replica backends, the rest, all;
    each less what the same processes spent in as long an idle spell (the consumers'
    and the job runner's polling)."""
    scale = f.pages_wall_s / f.idle_wall_s

    def net(*roles: str) -> float:
        return _run(f.pages_cpu, *roles) - _run(f.idle_cpu, *roles) * scale

    server, primary = net("server"), net("primary backends")
    replica, total = net("replica backends"), net()
    return [x * 1000 / f.pages_requested
            for x in (server, primary, replica, total - server - primary - replica, total)]


def _ingest_cost(f: Figures) -> list[float]:
    """CPU us per record of the ingest: server, primary backends, the primary's other
    processes, the replica's replay (startup and walreceiver), all; and the replay's
    share of all."""
    cpu, n = f.ingest_cpu, max(1, f.ingest.ok)
    parts = [_run(cpu, "server"), _run(cpu, "primary backends"), _run(cpu, *PRIMARY_OTHER),
             _run(cpu, *REPLAY), _run(cpu)]
    return [x * 1e6 / n for x in parts] + [parts[3] / parts[4] * 100 if parts[4] else 0.0]


def _mixed_cost(f: Figures) -> list[float]:
    """Pages under ingest: the replica backends' CPU ms per page, the replay's cores
    (CPU seconds per second), all processes' cores, and the server's threads' wait
    for a core (seconds per second: two threads waiting for a second count two)."""
    cpu, wall = f.mixed_cpu, f.mixed_wall_s or 1.0
    waited = sum(c.wait_s for role, c in cpu.items() if role == "server")
    return [_run(cpu, "replica backends") * 1000 / f.mixed_pages_requested,
            _run(cpu, *REPLAY) / wall, _run(cpu) / wall, waited / wall]


def _median(rows: list[list[float]]) -> list[float]:
    return [statistics.median(column) for column in zip(*rows, strict=True)]


def _ratio_cell(values: list[float], lower_is_better: bool) -> str:
    """Per-round ratios: their median, its confidence interval and the verdict."""
    spread = Spread(tuple(values))
    verdict = change(spread, lower_is_better=lower_is_better)
    return f"{spread.median:.3f} ({spread.interval_text()}): {verdict}"


def ratio_rows(runs: dict[str, list[Figures]]) -> list[list[object]]:
    """Each configuration against plain *of the same round*, figure by figure."""
    base = runs["plain"]
    figures = (  # (value of a round, lower is better)
        (lambda f: f.ingest.per_second, False),
        (lambda f: f.pages_ms, True),
        (lambda f: f.mixed_pages_ms, True),
        (lambda f: _page_cost(f)[4], True),
        (lambda f: _ingest_cost(f)[4], True),
    )
    rows: list[list[object]] = []
    for name, rounds in runs.items():
        if name == "plain":
            continue
        cells = [_ratio_cell([value(f) / value(b) for f, b in zip(rounds, base, strict=True)],
                             lower_is_better)
                 for value, lower_is_better in figures]
        rows.append([name, *cells])
    return rows


def partition_as_a_server(url: str, now: float) -> None:
    """Migrate the database at ``url`` and partition its ``records`` by month from 70
    days before ``now``, with the server's own layout: the months since the boundary,
    then this month and partitions.AHEAD more, as a server makes them on start
    (ensure_ahead). Every partition adds planning to the statements that cannot be
    pruned (docs/performance.md), so no more than the server would have."""
    store = Store(Settings(database_url=url))
    try:
        store.migrate()
        first = partitions.month_start(now - 70 * 86400.0)
        months, start = 0, first
        while (start := partitions.next_month(start)) <= partitions.month_start(now):
            months += 1
        partitions.convert(store.write_engine, boundary=first, ahead=months)
        with store.write_engine.begin() as conn:
            partitions.ensure_ahead(conn, now)
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs of every configuration, interleaved; the best is kept")
    parser.add_argument("--no-write", action="store_true", help="do not touch the docs")
    args = parser.parse_args()
    need_wrk()
    about = machine()
    primary = TempPostgres(fsync=True).start_primary()
    replica = None
    try:
        now = time.time()
        plain = primary.create_database("tpl_plain")
        print(f"loading {args.records:,} records (plain)", flush=True)
        load(plain, args.records, seed=7, now=now)
        parted = primary.create_database("tpl_parted")
        partition_as_a_server(parted, now)
        print(f"loading {args.records:,} records (partitioned)", flush=True)
        load(parted, args.records, seed=7, now=now)
        replica = primary.start_replica()
        log = Path(primary.root) / "server.log"
        runs: dict[str, list[Figures]] = {}
        for name, _, _ in CONFIGS:
            runs[name] = []
        for round_ in range(args.rounds):
            turn = round_ % len(CONFIGS)  # each round starts one further: drift cancels
            for name, template, use_replica in CONFIGS[turn:] + CONFIGS[:turn]:
                print(f"{name} (round {round_ + 1}) …", flush=True)
                db = f"run_{name.replace(' ', '_')}_{round_}"
                runs[name].append(run_config(
                    primary, replica, template, db, use_replica, args, log))
    finally:
        if replica is not None:
            replica.stop()
        primary.stop()
    times = {name: _times(figures) for name, figures in runs.items()}
    base_ingest, base_pages, base_mixed, _ = times["plain"]
    rows = []
    for name, (ingest, pages_ms, mixed_ms, mixed_ingest) in times.items():
        errors = sum(x.status_errors + x.socket_errors
                     for f in runs[name] for x in (f.ingest, f.mixed_ingest))
        rows.append([
            name, round(ingest.per_second), ingest.p99_ms,
            f"{ingest.per_second / base_ingest.per_second:.2f}",
            f"{pages_ms:.1f}", f"{pages_ms / base_pages:.2f}",
            f"{mixed_ms:.1f}", f"{mixed_ms / base_mixed:.2f}",
            round(mixed_ingest.per_second), errors,
        ])
    result = table(["configuration", "records/s", "p99 ms", "ratio (higher is better)",
                    "pages ms", "ratio (lower is better)", "pages ms under ingest",
                    "ratio (lower is better)", "records/s beside pages", "errors"], rows)
    print(result)
    cpu_rows = []
    for name, figures in runs.items():
        page = _median([_page_cost(f) for f in figures])
        ingest_cost = _median([_ingest_cost(f) for f in figures])
        mixed_cost = _median([_mixed_cost(f) for f in figures])
        replica_side = dict((n, r) for n, _, r in CONFIGS)[name]
        cpu_rows.append([
            name, *(f"{x:.2f}" for x in page),
            *(f"{x:.1f}" for x in ingest_cost[:5]), f"{ingest_cost[5]:.0f} %",
            f"{mixed_cost[0]:.2f}" if replica_side else "-",
            f"{mixed_cost[1]:.2f}", f"{mixed_cost[2]:.2f}", f"{mixed_cost[3]:.2f}",
            sum(f.conflicts for f in figures), sum(f.fallbacks for f in figures),
        ])
    cpu_table = table([
        "configuration", "page: server ms", "page: primary backends ms",
        "page: replica backends ms", "page: other PostgreSQL ms", "page: all ms",
        "record: server us", "record: primary backends us", "record: primary other us",
        "record: replica replay us", "record: all us", "replay share",
        "under ingest: replica backends ms/page", "under ingest: replay cores",
        "under ingest: all cores", "under ingest: server's wait for a core (s/s)",
        "replay conflicts", "reads fallen back to the primary",
    ], cpu_rows)
    print(cpu_table)
    ratios_table = table([
        "configuration", "records/s", "pages ms", "pages ms under ingest",
        "CPU per page (all)", "CPU per record (all)"], ratio_rows(runs))
    print(ratios_table)
    load_end = os.getloadavg()
    body = (
        "## Read replica and monthly partitions (issue 15)\n\n"
        f"`python bench/replica.py --records {args.records} --seconds {args.seconds:g} "
        f"--connections {args.connections} --rounds {args.rounds}` — {about} Load "
        f"average at the end {load_end[0]:.1f}.\n\n"
        f"{args.records:,} generated records (60 days) per database; one `downlink serve` "
        "worker on a PostgreSQL primary (fsync=on) with a streaming replica on the same "
        "machine. *records/s*: wrk single-record posts; *pages ms*: the median over "
        f"{len(PAGES)} views ({', '.join(PAGES)}) of each view's median of {ROUNDS}; "
        "*under ingest*: the same while wrk posts, with the ingest rate it kept beside "
        f"them. The configurations run interleaved, {args.rounds} rounds, each round "
        "starting one configuration further; each figure is the best of its rounds. "
        "Ratios against *plain* (1.00; ingest: higher is better, pages: lower is "
        "better). *plain again* is plain once more, a placebo: its ratios are what the "
        "noise of this run gives to the same configuration. The replica streams from "
        "the primary during every configuration (plain included), so its replay is in "
        "every figure; what the replica configurations change is where the pages are "
        "read. Replica and primary share the same two cores here, so a replica cannot "
        "add capacity in this run.\n\n" + result + "\n\n"
        "**What it cost in CPU** (`bench/proc_cpu.py`: time on a CPU of every thread, "
        "from `/proc/*/task/*/schedstat`; the median of the rounds). *page*: CPU per "
        "page request of the quiet pages (the consumers caught up and the replica "
        "replayed first), in the server process, the primary's and the replica's "
        "client backends and the rest of both clusters (background processes, WAL "
        f"sender, receiver and replay), each less what it spent in a {IDLE_S:g} s idle "
        "spell just before, scaled to the pages' time (the consumers' and job "
        "runner's polling of the primary is not a page's cost). *record*: CPU per "
        "record of the ingest run, the replica's replay being its `startup` process "
        "and `walreceiver`. *under "
        "ingest*: while wrk posts, the replica's backends' CPU per page (the pages' own "
        "cost on the replica), the cores the replay and all these processes kept busy "
        "(CPU seconds per second, of 2), and how long the server's threads were ready "
        "to run but waited for a core (seconds per second, summed over its threads; "
        "other work on the machine counts there too). *replay conflicts*: queries the "
        "replica cancelled for its replay (`pg_stat_database_conflicts`), and the reads "
        "the server then ran on the primary (its log), over all rounds.\n\n" + cpu_table
        + "\n\n**Against plain, round by round** (the error bar): each configuration's "
        "figure divided by plain's *of the same round*, the median of the rounds' "
        "ratios, in brackets a distribution-free confidence interval of that median "
        "(the k-th lowest and highest rounds; its coverage), then whether it shows a "
        "change: \"no change shown\" when the interval holds 1.000 (a change smaller "
        "than its half-width is not ruled out), else better or worse. records/s: "
        "higher is better; the others: lower is better. *plain again* is the placebo: "
        "the interval the same code gets.\n\n" + ratios_table
    )
    if not args.no_write:
        write_section("replica", body)


if __name__ == "__main__":
    main()
