"""Sender binding on vs off: single-record /v2/collector ingest in the same run.

First, in process (what a loaded machine does not inflate): the collector's ASGI app
driven directly as ``bench/ingest_cpu.py`` does, binding off and on alternating on fresh
databases, CPU per record of this process (and of PostgreSQL's processes), for *known*
senders (``--machines`` ids, each bound during the warm-up) and for *new* ones (every
record a machine id never seen: each binds it). Then, end to end, servers alternate
between binding off (the default) and ``DOWNLINK_SENDER_BINDING=clearlinux`` with a
per-sender rate limit high enough never to refuse (so both the binding check and the
sender bucket run on every post), each on a fresh database, with the same load: wrk, 64
keep-alive connections, records cycling through ``--machines`` machine ids (each bound
by its first record, before the warm-up).
The median of the rounds is reported; *ratio* is on / off.

    python bench/senders.py [--seconds 10] [--rounds 2] [--machines 1000] \
        [--cpu-records 20000] [--cpu-rounds 3]
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
from common import machine, table, write_section  # noqa: E402
from load import TID, LoadResult, need_wrk, run_wrk  # noqa: E402

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

    def post(i: int) -> None:
        answer = httpx.post(target, headers={**headers, "machine_id": f"{i:032x}",
                                             "event_id": f"{i:032x}"}, content=b"x", timeout=60)
        answer.raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(post, range(machines)))


def _one(url: str, env: dict[str, str], args: argparse.Namespace, log: Path) -> LoadResult:
    server = LiveServer(url, env=env, log=log).start()
    try:
        target = server.url + "/v2/collector"
        _prebind(target, args.machines)
        run_wrk(target, WARM_UP_S, args.connections, machines=args.machines)
        return run_wrk(target, args.seconds, args.connections, machines=args.machines)
    finally:
        server.stop()


def guard_cost(tmp: Path, machines: int, posts: int = 200_000) -> float:
    """Microseconds the collector spends in the guard per post of a bound sender.

    In process, so it does not depend on the machine's other load: the proof read from
    a real client's headers, the sender's token bucket and the check (a cache hit),
    in CPU time of this process (the machine's other work does not count).
    """
    settings = Settings(database_url=f"sqlite:///{tmp / 'guard.db'}",
                        sqlite_synchronous="OFF",  # binding the ids first: not measured
                        sender_binding=("clearlinux",), sender_rate_limit=1e9,
                        sender_rate_burst=1_000_000_000)
    store = Store(settings)
    store.start()
    try:
        guard = SenderGuard(store, settings, sender_rules(settings.registry))
        headers = [(k.lower().encode(), v.encode()) for k, v in (
            ("Host", "127.0.0.1"), ("record_format_version", "4"), ("severity", "1"),
            ("classification", "org.clearlinux/bench/ingest"), ("machine_id", "m"),
            ("creation_timestamp", "1700000000"), ("arch", "x86_64"), ("build", "12"),
            ("X-Telemetry-TID", "t"), ("Content-Type", "application/text"))]
        ids = [f"{i:032x}" for i in range(machines)]

        async def run() -> float:
            for sender in ids:  # bind them all first
                await guard.check("clearlinux", (sender,), guard.proof(headers, ("127.0.0.1", 1)))
            started = time.process_time()
            for i in range(posts):
                sender = ids[i % machines]
                guard.rate_wait("clearlinux", (sender,))
                proof = guard.proof(headers, ("127.0.0.1", 1))
                await guard.check("clearlinux", (sender,), proof)
            return (time.process_time() - started) / posts * 1e6

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


def cpu_rows(tmp: Path, pg: TempPostgres | None, databases: list[str], machines: int,
             records: int, rounds: int) -> list[list[object]]:
    """On/off CPU per record for known and new senders, median of ``rounds``."""
    rows: list[list[object]] = []
    for db in databases:
        for senders_kind, ids in (("known", machines), ("new", None)):
            runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            for r in range(rounds):
                # Alternating which goes first: a process's later runs drift slower.
                for binding in ((False, True) if r % 2 == 0 else (True, False)):
                    name = f"cpu_{senders_kind}_{int(binding)}_{r}"
                    if db == "sqlite":
                        url, pid = f"sqlite:///{tmp / f'{name}.db'}", None
                    else:
                        assert pg is not None
                        url = pg.create_database(name)
                        pid = ingest_cpu._postmaster(pg.datadir)
                    got = cpu_per_record(url, binding, ids, records, pid, f"{r}{int(binding)}")
                    runs[binding].append(got)
                    print(db, senders_kind, "on" if binding else "off", r,
                          [round(x, 1) for x in got], flush=True)
            off = statistics.median(x[0] + x[1] for x in runs[False])
            for binding in (False, True):
                app = statistics.median(x[0] for x in runs[binding])
                dbs = statistics.median(x[1] for x in runs[binding])
                total = statistics.median(x[0] + x[1] for x in runs[binding])
                rows.append([db, senders_kind, "on" if binding else "off", round(app, 1),
                             round(dbs, 1) if db != "sqlite" else "-", round(total, 1),
                             f"{total / off:.3f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--cpu-records", type=int, default=20000,
                        help="records measured per in-process CPU run")
    parser.add_argument("--cpu-rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="do not touch the docs")
    args = parser.parse_args()
    need_wrk()
    about = machine()
    tmp = Path(tempfile.mkdtemp(prefix="downlink-bench-senders-"))
    databases = args.databases.split(",")
    pg = TempPostgres(fsync=True).start() if "postgresql" in databases else None
    rows: list[list[object]] = []
    cost = guard_cost(tmp, args.machines)
    print(f"guard: {cost:.1f} us per post", flush=True)
    try:
        cpu = cpu_rows(tmp, pg, databases, args.machines, args.cpu_records, args.cpu_rounds)
        cpu_table = table(["database", "senders", "binding", "app CPU us/record",
                           "database CPU us/record", "total", "ratio on/off"], cpu)
        print(cpu_table, flush=True)
        for db in databases:
            runs: dict[str, list[LoadResult]] = {"off": [], "on": []}
            for r in range(args.rounds):
                for mode, env in (("off", {}), ("on", ON)):
                    if db == "sqlite":
                        url = f"sqlite:///{tmp / f'{mode}-{r}.db'}"
                    else:
                        assert pg is not None
                        url = pg.create_database(f"senders_{mode}_{r}")
                    res = _one(url, env, args, tmp / "server.log")
                    runs[mode].append(res)
                    print(db, mode, r, round(res.per_second), res.p99_ms, flush=True)
            off = statistics.median(x.per_second for x in runs["off"])
            for mode in ("off", "on"):
                rate = statistics.median(x.per_second for x in runs[mode])
                rows.append([
                    db, mode, round(rate),
                    round(statistics.median(x.p50_ms for x in runs[mode]), 2),
                    round(statistics.median(x.p99_ms for x in runs[mode]), 2),
                    sum(x.status_errors + x.socket_errors for x in runs[mode]),
                    f"{rate / off:.2f}" if off else "-",
                ])
    finally:
        if pg is not None:
            pg.stop()
    slowest_off = min(float(r[2]) for r in rows if r[1] == "off") or 1.0
    load = f"{os.getloadavg()[0]:.0f}"
    result = table(["database", "binding", "records/s", "p50 ms", "p99 ms", "errors",
                    "ratio on/off (higher is better)"], rows)
    print(result)
    body = (
        "## Sender binding on vs off (`python bench/senders.py`)\n\n"
        f"`python bench/senders.py --seconds {args.seconds:g} --rounds {args.rounds} "
        f"--machines {args.machines} --cpu-records {args.cpu_records} "
        f"--cpu-rounds {args.cpu_rounds}` — {about}\n\n"
        "**CPU per record, in process** (what the machine's other load does not "
        "inflate): the collector's ASGI app driven directly (`bench/ingest_cpu.py`'s "
        f"driver: 64 posts at a time, consumers off), {args.cpu_records:,} records per "
        f"run after a warm-up, binding off and on alternating on fresh databases (which "
        f"goes first alternating too), median of {args.cpu_rounds} rounds. *known*: "
        f"{args.machines} machine ids in turn, each "
        "bound during the warm-up (the steady state: a cache hit per post); *new*: every "
        "record a machine id never seen (each post binds one; the look-ups of the posts "
        "waiting together share one transaction: a read, then an insert of the new ids). "
        "*ratio on/off*: total CPU per record, lower is better.\n\n" + cpu_table + "\n\n"
        "**End to end**: "
        f"One server process; wrk, {args.connections} keep-alive connections, single-record "
        f"`POST /v2/collector` of {args.machines} machine ids in turn, {args.seconds:g} s per "
        f"run after one record per machine id (which binds it) and a {WARM_UP_S} s warm-up, "
        "binding off and "
        "on (`DOWNLINK_SENDER_BINDING=clearlinux` plus a per-sender rate limit that never "
        f"refuses) alternating on fresh databases, median of {args.rounds} rounds. With "
        "binding on, a known sender costs a cache look-up, a network mask and a token "
        f"bucket per post (no query): **{cost:.1f} us of CPU per post**, measured in "
        f"process (`guard_cost`: {args.machines} bound machine ids, 200,000 posts), where "
        f"the slowest off run below spent {1e6 / slowest_off:,.0f} us of server time per "
        "record. The end-to-end figures are as noisy as the machine was busy (other "
        f"work kept the load average at {load}, on 2 cores): compare the rounds printed "
        "by the script, and the in-process cost.\n\n" + result
    )
    if not args.no_write:
        write_section("senders", body)


if __name__ == "__main__":
    main()
