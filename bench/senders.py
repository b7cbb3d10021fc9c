"""Sender binding on vs off: single-record /v2/collector ingest in the same run.

First, in process (what a loaded machine does not inflate): the collector's ASGI app
driven directly as ``bench/ingest_cpu.py`` does, on fresh databases, CPU per record of
this process (and of PostgreSQL's processes), for *known* senders (``--machines`` ids,
each bound during the warm-up) and for *new* ones (every record a machine id never
seen: each binds it). Then, end to end, servers with binding off (the default) and with
``DOWNLINK_SENDER_BINDING=clearlinux`` plus a per-sender rate limit high enough never to
refuse (so both the binding check and the sender bucket run on every post), each on a
fresh database, with the same load: wrk, 64 keep-alive connections, records cycling
through ``--machines`` machine ids (each bound by its first record, before the warm-up);
records/s, and the server's (and PostgreSQL's) CPU per record from ``/proc``.

Every round runs off, on and off again (*off2*, a placebo) in a rotating order; each
ratio on/off is given with its rounds' spread beside the spread of off2/off, the noise
between two runs of the same code, so that "unchanged" has an error bar.

    python bench/senders.py [--seconds 10] [--rounds 3] [--machines 1000] \
        [--cpu-records 20000] [--cpu-rounds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest_cpu  # noqa: E402
import proc_cpu  # noqa: E402
from common import machine, table, write_section  # noqa: E402
from load import TID, LoadResult, need_wrk, run_wrk  # noqa: E402
from spread import Spread, change  # noqa: E402

from downlink.app import create_app, sender_rules  # noqa: E402
from downlink.security.senders import SenderGuard  # noqa: E402
from downlink.settings import Settings  # noqa: E402
from downlink.store.database import Store  # noqa: E402
from downlink.testing.live import LiveServer  # noqa: E402
from downlink.testing.postgres import TempPostgres  # noqa: E402

WARM_UP_S = 5
ON = {"DOWNLINK_SENDER_BINDING": "clearlinux", "DOWNLINK_SENDER_RATE_LIMIT": "1000000",
      "DOWNLINK_SENDER_RATE_BURST": "1000000"}


def _prebind(target: str, machines: int) -> None:
    """One record per machine id first (binding each, when on): the measured runs see
    known senders only, whatever rate the warm-up reaches on a busy machine."""
    headers = {
        "record_format_version": "4", "classification": "org.clearlinux/bench/prebind",
        "severity": "1", "creation_timestamp": str(int(time.time())), "arch": "x86_64",
        "host_type": "no_sv_file|no_pn_file|no_pvr_file", "build": '"12"',
        "kernel_version": "6.18.44-fc-v657", "payload_format_version": "1",
        "system_name": "debian", "board_name": "no_bn_file|no_bv_file",
        "cpu_model": "Intel(R)", "bios_version": "no_bv_file", "X-Telemetry-TID": TID,
        "Content-Type": "application/text",
    }

    # One client for all the posts: httpx.post() builds a client (and its TLS context)
    # per call, which took minutes for 1000 posts on a loaded machine.
    with httpx.Client(timeout=60) as client:

        def post(i: int) -> None:
            answer = client.post(target, headers={**headers, "machine_id": f"{i:032x}",
                                                  "event_id": f"{i:032x}"}, content=b"x")
            answer.raise_for_status()

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(post, range(machines)))


def guard_cost(tmp: Path, machines: int, posts: int = 200_000) -> float:
    """Microseconds the collector spends in the guard per post of a bound sender.

    In process, so it does not depend on the machine's other load: the sender's token
    bucket and the decision as the collector makes it (``known``: a cache hit, the
    network compared; ``check`` only when that cannot decide), in CPU time of this
    process (the machine's other work does not count).
    """
    settings = Settings(database_url=f"sqlite:///{tmp / 'guard.db'}",
                        sqlite_synchronous="OFF",  # binding the ids first: not measured
                        sender_binding=("clearlinux",), sender_rate_limit=1e9,
                        sender_rate_burst=1_000_000_000)
    store = Store(settings)
    store.start()
    try:
        guard = SenderGuard(store, settings, sender_rules(settings.registry))
        client = ("127.0.0.1", 40000)
        ids = [f"{i:032x}" for i in range(machines)]

        async def run() -> float:
            for sender in ids:  # bind them all first
                await guard.check("clearlinux", (sender,), guard.proof((), client))
            spent = 0.0
            for start in range(0, posts, machines):
                await asyncio.sleep(0)  # the log of changes is read in the background
                began = time.process_time()
                for sender in ids[: posts - start]:
                    guard.rate_wait("clearlinux", (sender,))
                    if guard.binds("clearlinux") and not guard.known(
                            "clearlinux", sender, False, client):
                        await guard.check("clearlinux", (sender,), guard.proof((), client))
                spent += time.process_time() - began
            return spent / posts * 1e6

        return asyncio.run(run())
    finally:
        store.close()


def _requests(n: int, prefix: str, machines: int | None) -> list[tuple[dict[str, Any], bytes]]:
    """Collector posts whose machine ids cycle through ``machines`` ids (None: every
    post its own id, never seen before)."""
    out = []
    for i in range(n):
        scope = ingest_cpu._collector_scope(i, prefix)
        sender = (f"{prefix}{i:030x}" if machines is None else f"{i % machines:032x}").encode()
        scope["headers"] = [(k, sender) if k == b"machine_id" else (k, v)
                            for k, v in scope["headers"]]
        out.append((scope, ingest_cpu._BODY))
    return out


def cpu_per_record(url: str, binding: bool, machines: int | None, records: int,
                   db_pid: int | None, prefix: str) -> tuple[float, float]:
    """Microseconds of CPU per record (this process, the database's processes) of the
    collector app driven in process, 64 posts at a time, consumers off."""
    env = ({"sender_binding": ("clearlinux",), "sender_rate_limit": 1e9,
            "sender_rate_burst": 1_000_000_000} if binding else {})
    settings = Settings(database_url=url, telemetry_ids=(ingest_cpu.TID,),
                        consumer_poll_s=0.0, **env)  # type: ignore[arg-type]
    warm = max(2000, machines or 0)  # known senders: every id bound before measuring
    reqs = _requests(warm + records, prefix, machines)
    res = ingest_cpu._run_loop(ingest_cpu.run(create_app(settings), reqs, records, 64,
                                              db_pid, warm))
    assert set(res.statuses) == {201}, res.statuses
    return res.per_record_us(res.cpu_s), res.per_record_us(res.db_cpu_s)


# Each round runs binding off, on, and off again ("off2": a placebo, the same as off),
# in an order that rotates, so that over three rounds each takes each place once and a
# drift of the machine or of the process cancels out.
MODES = ("off", "on", "off2")
ORDERS = (("off", "on", "off2"), ("on", "off2", "off"), ("off2", "off", "on"))


def order(round_: int) -> tuple[str, str, str]:
    return ORDERS[round_ % len(ORDERS)]


def ratios(runs: dict[str, list[float]]) -> tuple[Spread, Spread]:
    """Per round: on / off, and the placebo off2 / off (the noise between two runs of
    the same code)."""
    on = tuple(a / b for a, b in zip(runs["on"], runs["off"], strict=True))
    placebo = tuple(a / b for a, b in zip(runs["off2"], runs["off"], strict=True))
    return Spread(on), Spread(placebo)


def verdict(on: Spread, placebo: Spread, lower_is_better: bool) -> str:
    """Is on/off's median inside the spread of off2/off (what the same code gives)?"""
    if len(placebo.values) < 2:
        return "one round: no spread to compare with"
    low, high = min(placebo.values), max(placebo.values)
    if low <= on.median <= high:
        return "inside the noise"
    worse = on.median > high if lower_is_better else on.median < low
    return "worse than the noise" if worse else "better than the noise"


def cpu_rows(tmp: Path, pg: TempPostgres | None, databases: list[str], machines: int,
             records: int, rounds: int, kinds: list[str]) -> list[list[object]]:
    """On/off CPU per record for known and/or new senders over ``rounds`` rounds."""
    rows: list[list[object]] = []
    for db in databases:
        for senders_kind in kinds:
            ids = machines if senders_kind == "known" else None
            runs: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
            for r in range(-1, rounds):  # round -1: a warm-up run, not counted
                for mode in order(r) if r >= 0 else ("off",):
                    name = f"cpu_{senders_kind}_{mode}_{r}".replace("-", "w")
                    if db == "sqlite":
                        url, pid = f"sqlite:///{tmp / f'{name}.db'}", None
                    else:
                        assert pg is not None
                        url = pg.create_database(name)
                        pid = ingest_cpu._postmaster(pg.datadir)
                    got = cpu_per_record(url, mode == "on", ids, records, pid,
                                         f"{(r + 1) % 10}{MODES.index(mode)}")
                    if r >= 0:
                        runs[mode].append(got)
                    print(db, senders_kind, mode, r, [round(x, 2) for x in got], flush=True)
            totals = {m: [x[0] + x[1] for x in runs[m]] for m in MODES}
            on, placebo = ratios(totals)
            cells = [_cpu_cell(db, [x[0] for x in runs[m]], totals[m]) for m in ("off", "on")]
            rows.append([db, senders_kind, *cells, on.text(), placebo.text(),
                         verdict(on, placebo, lower_is_better=True), on.interval_text(),
                         change(on, lower_is_better=True)])
    return rows


def _cpu_cell(db: str, app: list[float], total: list[float]) -> str:
    """The median total CPU per record; on PostgreSQL, split into process + database."""
    app_us, total_us = statistics.median(app), statistics.median(total)
    if db == "sqlite":
        return f"{total_us:.1f}"
    return f"{total_us:.1f} ({app_us:.1f} + {total_us - app_us:.1f})"


def _one(url: str, env: dict[str, str], args: argparse.Namespace, log: Path,
         postmaster: int | None) -> tuple[LoadResult, float]:
    """One end-to-end run: wrk's result, and the CPU per record (us) of the server
    process and, on PostgreSQL, of the database's processes."""
    server = LiveServer(url, env=env, log=log).start()
    try:
        assert server.proc is not None
        target = server.url + "/v2/collector"
        _prebind(target, args.machines)
        run_wrk(target, WARM_UP_S, args.connections, machines=args.machines)
        clusters = {"db": postmaster} if postmaster is not None else {}
        before = proc_cpu.snapshot(server.proc.pid, clusters)
        res = run_wrk(target, args.seconds, args.connections, machines=args.machines)
        spent = proc_cpu.between(before, proc_cpu.snapshot(server.proc.pid, clusters))
        cpu = sum(c.run_s for c in spent.values())
        return res, cpu / max(1, res.ok) * 1e6
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--cpu-records", type=int, default=20000,
                        help="records measured per in-process CPU run")
    parser.add_argument("--cpu-rounds", type=int, default=6)
    parser.add_argument("--kinds", default="known,new",
                        help="senders measured in process: known (cached), new (first uses)")
    parser.add_argument("--no-write", action="store_true", help="do not touch the docs")
    args = parser.parse_args()
    need_wrk()
    about = machine()
    cpu_started = _all_cpu()
    tmp = Path(tempfile.mkdtemp(prefix="downlink-bench-senders-"))
    databases = args.databases.split(",")
    pg = TempPostgres(fsync=True).start() if "postgresql" in databases else None
    rows: list[list[object]] = []
    cost = guard_cost(tmp, args.machines)
    print(f"guard: {cost:.2f} us per post", flush=True)
    loads = [os.getloadavg()[0]]
    try:
        kinds = [k for k in args.kinds.split(",") if k in ("known", "new")]
        cpu = cpu_rows(tmp, pg, databases, args.machines, args.cpu_records, args.cpu_rounds,
                       kinds)
        cpu_table = table(["database", "senders", "off: CPU us/record",
                           "on: CPU us/record", "on/off: median (min–max)",
                           "off2/off: median (min–max)", "on/off against the noise",
                           "on/off median: interval", "on/off: change"], cpu)
        print(cpu_table, flush=True)
        loads.append(os.getloadavg()[0])
        for db in databases:
            runs: dict[str, list[tuple[LoadResult, float]]] = {m: [] for m in MODES}
            for r in range(args.rounds):
                for mode in order(r):
                    if db == "sqlite":
                        url, pid = f"sqlite:///{tmp / f'{mode}-{r}.db'}", None
                    else:
                        assert pg is not None
                        url = pg.create_database(f"senders_{mode}_{r}")
                        pid = ingest_cpu._postmaster(pg.datadir)
                    env = ON if mode == "on" else {}
                    res, per_record = _one(url, env, args, tmp / "server.log", pid)
                    runs[mode].append((res, per_record))
                    print(db, mode, r, round(res.per_second), res.p99_ms,
                          f"{per_record:.1f} us/record", flush=True)
            rate_on, rate_placebo = ratios({m: [x[0].per_second for x in runs[m]] for m in MODES})
            cpu_on, cpu_placebo = ratios({m: [x[1] for x in runs[m]] for m in MODES})
            rows.append([
                db,
                round(statistics.median(x[0].per_second for x in runs["off"])),
                round(statistics.median(x[0].per_second for x in runs["on"])),
                rate_on.text(), rate_placebo.text(),
                f"{statistics.median(x[1] for x in runs['off']):.1f}",
                f"{statistics.median(x[1] for x in runs['on']):.1f}",
                cpu_on.text(), cpu_placebo.text(),
                verdict(cpu_on, cpu_placebo, lower_is_better=True),
                cpu_on.interval_text(), change(cpu_on, lower_is_better=True),
                sum(x[0].status_errors + x[0].socket_errors for m in MODES for x in runs[m]),
            ])
            loads.append(os.getloadavg()[0])
    finally:
        if pg is not None:
            pg.stop()
    result = table(["database", "off: records/s", "on: records/s",
                    "records/s on/off: median (min–max)", "off2/off (min–max)",
                    "off: CPU us/record", "on: CPU us/record",
                    "CPU on/off: median (min–max)", "off2/off (min–max)",
                    "CPU on/off against the noise", "CPU on/off median: interval",
                    "CPU on/off: change", "errors"], rows)
    print(result)
    used = _all_cpu() - cpu_started
    n = args.cpu_rounds
    body = (
        "## Sender binding on vs off (`python bench/senders.py`)\n\n"
        f"`python bench/senders.py --seconds {args.seconds:g} --rounds {args.rounds} "
        f"--machines {args.machines} --cpu-records {args.cpu_records} "
        f"--cpu-rounds {args.cpu_rounds} --kinds {args.kinds}` — {about} Load average "
        f"during the run {min(loads):.1f}–{max(loads):.1f}; the benchmark and its "
        "servers used "
        f"{used:,.0f} s of CPU.\n\n"
        "**How to read it.** Every round runs binding *off*, *on*, and *off2* (off "
        "again: a placebo, the same code as *off*), each on a fresh database, in an order "
        "that rotates every round (off-on-off2, on-off2-off, off2-off-on), so that each "
        "takes every place equally and a drift of the machine cancels. *on/off* is each "
        "round's ratio, *off2/off* the same ratio between two runs of the same code: "
        "its spread is the noise. Given as the median of the rounds (their lowest and "
        "highest in brackets; the median of n rounds lies between the lowest and the "
        f"highest with probability 1 − 2^(1−n): {1 - 2 ** (1 - n):.0%} for {n} rounds). "
        "*against the noise*: whether on/off's median lies inside off2/off's range "
        "(then binding's cost is not told apart from the noise in this run) or outside "
        "it. *interval*: a distribution-free confidence interval of on/off's median "
        "ratio (the k-th lowest and highest rounds, k the largest keeping the coverage, "
        "in brackets, at 95 % or more); *change*: \"no change shown\" when it holds "
        "1.000, else worse or better (a change smaller than the interval's half-width "
        "is not ruled out).\n\n"
        "**CPU per record, in process** (what the machine's other load does not "
        "inflate): the collector's ASGI app driven directly (`bench/ingest_cpu.py`'s "
        f"driver: 64 posts at a time, consumers off), {args.cpu_records:,} records per "
        f"run after a warm-up, {n} rounds after one run not counted (a process's first "
        f"run is slower). *known*: {args.machines} machine ids in "
        "turn, each bound during the warm-up (the steady state: a cache hit per post); "
        "*new*: every record a machine id never seen (each post binds one; the look-ups "
        "of the posts waiting together share one transaction: a read, then an insert of "
        "the new ids). CPU of this process and, on PostgreSQL, of the database's "
        "processes (in brackets: process + database; from `/proc`, schedstat "
        "nanoseconds); lower is better.\n\n" + cpu_table + "\n\n"
        "**End to end**: one server process; wrk, "
        f"{args.connections} keep-alive connections, single-record `POST /v2/collector` "
        f"of {args.machines} machine ids in turn, {args.seconds:g} s per run after one "
        f"record per machine id (which binds it) and a {WARM_UP_S} s warm-up, "
        f"{args.rounds} rounds. *on* is `DOWNLINK_SENDER_BINDING=clearlinux` plus a "
        "per-sender rate limit that never refuses (both checks on every post). "
        "records/s is wall time, as loaded as the machine was; *CPU us/record* is the "
        "server process's CPU (and PostgreSQL's processes') per record stored, which "
        "the other load inflates far less. With binding on, a known sender costs its "
        "token bucket, a cache look-up and a compare of its network per post (no "
        f"query, no coroutine): **{cost:.2f} us of CPU per post** in process "
        f"(`guard_cost`: {args.machines} bound machine ids, 200,000 posts).\n\n" + result
    )
    if not args.no_write:
        write_section("senders", body)


def _all_cpu() -> float:
    """CPU seconds of this process and its waited-for children so far."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


if __name__ == "__main__":
    main()
