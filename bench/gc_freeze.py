"""Garbage-collector pauses of a loaded server, with startup frozen (the default) or not.

Each round starts a server with ``DOWNLINK_GC_FREEZE=true`` (*on*) and one with
``false`` (*off*), each on a fresh database, in an order that alternates, and loads it
as ``bench/ingest.py`` does (wrk, single-record ``POST /v2/collector``, keep-alive
connections) for a warm-up and then ``--seconds``. Per run: the collections the server
made during the measured part, by generation, and their time (its
``downlink_gc_pause_seconds`` histogram on ``/metrics``, read before and after),
records/s, latency p99 and max, and the server's CPU per record (``/proc``). Ratios
on/off per round, with the median's distribution-free interval (``bench/spread.py``).

    python bench/gc_freeze.py [--seconds 20] [--rounds 6] [--databases sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))

import proc_cpu  # noqa: E402
from common import machine, table, write_section  # noqa: E402
from load import LoadResult, need_wrk, run_wrk  # noqa: E402
from spread import Spread, change  # noqa: E402

from downlink.testing.live import LiveServer  # noqa: E402
from downlink.testing.postgres import TempPostgres  # noqa: E402

WARM_UP_S = 5
MODES = ("on", "off")


@dataclass(frozen=True)
class Pauses:
    """Collections of generation 2 and of all generations: how many, seconds."""

    full: int
    full_s: float
    all: int
    all_s: float

    def __sub__(self, other: Pauses) -> Pauses:
        return Pauses(self.full - other.full, self.full_s - other.full_s,
                      self.all - other.all, self.all_s - other.all_s)


def pauses(client: httpx.Client, url: str) -> Pauses:
    """The server's collections so far, from its ``/metrics``."""
    text = client.get(url + "/metrics").raise_for_status().text
    counts: dict[str, float] = {}
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "downlink_gc_pause_seconds":
            continue
        for sample in family.samples:
            generation = sample.labels.get("generation", "")
            if sample.name.endswith("_count"):
                counts[generation] = sample.value
            elif sample.name.endswith("_sum"):
                sums[generation] = sample.value
    return Pauses(int(counts.get("2", 0)), sums.get("2", 0.0),
                  int(sum(counts.values())), sum(sums.values()))


@dataclass(frozen=True)
class Outcome:
    load: LoadResult
    pauses: Pauses
    cpu_us: float  # the server's CPU per record answered


def one(url: str, freeze: bool, args: argparse.Namespace, log: Path) -> Outcome:
    env = {"DOWNLINK_GC_FREEZE": "true" if freeze else "false"}
    server = LiveServer(url, env=env, log=log).start()
    try:
        assert server.proc is not None
        target = server.url + "/v2/collector"
        run_wrk(target, WARM_UP_S, args.connections)
        with httpx.Client(timeout=30) as client:
            before, cpu0 = pauses(client, server.url), proc_cpu.snapshot(server.proc.pid, {})
            res = run_wrk(target, args.seconds, args.connections)
            cpu1, after = proc_cpu.snapshot(server.proc.pid, {}), pauses(client, server.url)
        cpu = sum(c.run_s for c in proc_cpu.between(cpu0, cpu1).values())
        return Outcome(res, after - before, cpu / max(1, res.ok) * 1e6)
    finally:
        server.stop()


def _figure(o: Outcome, name: str) -> float:
    """A figure of a run: wrk's (``per_second``, ``p99_ms``, ...) or ``cpu_us``."""
    return float(getattr(o.load, name) if hasattr(o.load, name) else getattr(o, name))


def _ratio(runs: dict[str, list[Outcome]], value: str) -> Spread:
    return Spread(tuple(_figure(a, value) / _figure(b, value)
                        for a, b in zip(runs["on"], runs["off"], strict=True)))


def _median(runs: list[Outcome], value: str) -> float:
    return statistics.median(_figure(o, value) for o in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--no-write", action="store_true", help="do not touch the docs")
    args = parser.parse_args()
    need_wrk()
    about = machine()
    tmp = Path(tempfile.mkdtemp(prefix="downlink-bench-gc-"))
    databases = args.databases.split(",")
    pg = TempPostgres(fsync=True).start() if "postgresql" in databases else None
    pause_rows: list[list[object]] = []
    ratio_rows: list[list[object]] = []
    loads = [os.getloadavg()[0]]
    try:
        for db in databases:
            runs: dict[str, list[Outcome]] = {m: [] for m in MODES}
            for r in range(args.rounds):
                for mode in MODES if r % 2 == 0 else MODES[::-1]:
                    if db == "sqlite":
                        url = f"sqlite:///{tmp / f'{mode}-{r}.db'}"
                    else:
                        assert pg is not None
                        url = pg.create_database(f"gc_{mode}_{r}")
                    got = one(url, mode == "on", args, tmp / "server.log")
                    runs[mode].append(got)
                    p = got.pauses
                    print(db, mode, r, round(got.load.per_second), got.load.p99_ms,
                          got.load.max_ms, f"{got.cpu_us:.1f} us/record", p, flush=True)
            for mode in MODES:
                outs = runs[mode]
                full = [o.pauses.full for o in outs]
                per_full = [o.pauses.full_s / o.pauses.full * 1e3 for o in outs if o.pauses.full]
                pause_rows.append([
                    db, mode, f"{statistics.median(full):g} ({min(full)}–{max(full)})",
                    f"{statistics.median(per_full):.1f}" if per_full else "none",
                    f"{statistics.median(o.pauses.all_s / args.seconds * 1e3 for o in outs):.1f}",
                    round(_median(outs, "per_second")), f"{_median(outs, 'p99_ms'):.1f}",
                    f"{_median(outs, 'max_ms'):.1f}", f"{_median(outs, 'cpu_us'):.1f}",
                    sum(o.load.status_errors + o.load.socket_errors for o in outs),
                ])
            for label, value, lower in (("records/s", "per_second", False),
                                        ("latency p99", "p99_ms", True),
                                        ("latency max", "max_ms", True),
                                        ("CPU per record", "cpu_us", True)):
                spread = _ratio(runs, value)
                ratio_rows.append([db, label, spread.text(), spread.interval_text(),
                                   change(spread, lower_is_better=lower)])
            loads.append(os.getloadavg()[0])
    finally:
        if pg is not None:
            pg.stop()
    pause_table = table(["database", "freeze", "full collections in the window: median "
                         "(min–max)", "ms per full collection (median)",
                         "ms of collections per second", "records/s", "p99 ms", "max ms",
                         "CPU us/record", "errors"], pause_rows)
    ratio_table = table(["database", "figure", "on/off: median (min–max)",
                         "median: interval", "change"], ratio_rows)
    print(pause_table)
    print(ratio_table)
    body = (
        "## Garbage-collector pauses, startup frozen or not (`python bench/gc_freeze.py`)\n\n"
        f"`python bench/gc_freeze.py --seconds {args.seconds:g} --rounds {args.rounds} "
        f"--connections {args.connections} --databases {args.databases}` — {about} Load "
        f"average during the run {min(loads):.1f}–{max(loads):.1f}.\n\n"
        "One server process per run on a fresh database, single-record `POST "
        f"/v2/collector` through wrk ({args.connections} keep-alive connections), a "
        f"{WARM_UP_S} s warm-up, then {args.seconds:g} s measured; *on* is "
        "`DOWNLINK_GC_FREEZE=true` (the default: the objects alive after startup are "
        "frozen out of the collector's scans), *off* `false`; each round runs both, in "
        "an order that alternates. Collections are the server's own "
        "`downlink_gc_pause_seconds` histogram over the measured part (a full "
        "collection is generation 2; every thread waits while one runs).\n\n"
        + pause_table + "\n\n"
        "Per round on/off, with a distribution-free confidence interval of the median "
        "ratio (`bench/spread.py`):\n\n" + ratio_table
    )
    if not args.no_write:
        write_section("gc-freeze", body)


if __name__ == "__main__":
    main()
