"""Memory benchmark: resident size of the server during sustained ingest load.

Starts ``downlink serve`` (one process, SQLite by default), drives it with the ingest
load generator (wrk) in back-to-back 30 s rounds for ``--minutes``, samples the
server's RSS every ``--every`` seconds and reports the first, last and largest value
after warm-up and the growth per minute of a least-squares line through the samples.

    python bench/memory.py [--minutes 10] [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, table, write_section  # noqa: E402
from load import need_wrk, run_wrk  # noqa: E402

from downlink.testing.live import LiveServer  # noqa: E402
from downlink.testing.postgres import TempPostgres  # noqa: E402


def rss_mib(pid: int) -> float:
    """Resident set size of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares growth of RSS in MiB per minute."""
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_r = sum(r for _, r in samples) / n
    num = sum((t - mean_t) * (r - mean_r) for t, r in samples)
    den = sum((t - mean_t) ** 2 for t, _ in samples) or 1.0
    return num / den * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    need_wrk()
    about = machine()
    tmp = Path(tempfile.mkdtemp(prefix="downlink-memory-"))
    pg = TempPostgres(fsync=True).start() if args.database == "postgresql" else None
    url = pg.create_database("memory") if pg else f"sqlite:///{tmp / 'memory.db'}"
    server = LiveServer(url, log=tmp / "server.log").start()
    samples: list[tuple[float, float]] = []
    sent = 0
    ok = 0
    try:
        assert server.proc is not None
        pid = server.proc.pid
        end = time.monotonic() + args.minutes * 60
        stop = threading.Event()

        def sample() -> None:
            start = time.monotonic()
            while not stop.is_set():
                samples.append((time.monotonic() - start, rss_mib(pid)))
                stop.wait(args.every)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        while (left := end - time.monotonic()) > 1:
            res = run_wrk(server.url + "/v2/collector", min(30.0, left), args.connections)
            sent += res.requests
            ok += res.ok
        stop.set()
        sampler.join(10)
    finally:
        server.stop()
        if pg is not None:
            pg.stop()
    warm = [s for s in samples if s[0] >= 30] or samples
    first, last = warm[0][1], warm[-1][1]
    peak = max(r for _, r in warm)
    growth = slope_per_minute(warm)
    flat = abs(last - first) < max(10.0, 0.1 * first) and abs(growth) < 2.0
    rows = [[args.database, f"{args.minutes:g}", f"{ok:,}", f"{samples[0][1]:.1f}",
             f"{first:.1f}", f"{last:.1f}", f"{peak:.1f}", f"{growth:+.2f}",
             "yes" if flat else "NO"]]
    result = table(["database", "minutes", "records stored", "RSS at start MiB",
                    "after 30 s", "at end", "max", "MiB/min", "flat"], rows)
    print(result)
    body = (
        "## Memory under sustained load\n\n"
        f"`python bench/memory.py --minutes {args.minutes:g} --database {args.database}` — "
        f"{about}\n\n"
        f"One server process under continuous wrk load ({args.connections} connections), "
        f"RSS sampled every {args.every:g} s; *flat* means the RSS after the first 30 s "
        "grew by less than max(10 MiB, 10 %) and the fitted slope is under 2 MiB/min.\n\n"
        + result
    )
    if not args.no_write:
        write_section("memory", body)


if __name__ == "__main__":
    main()
