"""Memory benchmark: resident size of the server during sustained ingest load.

Starts ``downlink serve`` (one process, SQLite by default), drives it with the ingest
load generator (wrk) in back-to-back 30 s rounds for ``--minutes``, samples the
server's RSS every ``--every`` seconds and reports the first, last and largest value
after warm-up and the growth per minute of a least-squares line through the samples.

    python bench/memory.py [--minutes 10] [--database sqlite|postgresql]

With ``--exports`` it measures instead what answering large exports costs: it stores
``--records`` records of 4 MiB each (posted to the collector, which takes bodies up to
8 MiB with no token), then downloads all of them from ``/api/records`` as NDJSON, CSV
and JSON (one JSON page, DOWNLINK_API_PAGE_BYTES) and with ``downlink export``, and
reports the peak RSS of the server (and of the export command) above its RSS after
the records were stored, the baseline measured in the same run.

    python bench/memory.py --exports [--records 64] [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine, table, write_section  # noqa: E402
from load import need_wrk, run_wrk  # noqa: E402
from tests.hardening.records import v2_headers, v3_record  # noqa: E402

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


class PeakRss:
    """The largest RSS of a process while the block runs, sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_mib(self.pid))
            except (OSError, RuntimeError):
                return
            time.sleep(0.01)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def exports(args: argparse.Namespace) -> None:
    """Peak memory of streaming large answers (``--exports``)."""
    about = machine()
    tmp = Path(tempfile.mkdtemp(prefix="downlink-exports-"))
    pg = TempPostgres(fsync=True).start() if args.database == "postgresql" else None
    url = pg.create_database("exports") if pg else f"sqlite:///{tmp / 'exports.db'}"
    server = LiveServer(url, log=tmp / "server.log").start()
    payload_bytes = 4 * 1024 * 1024
    rows = []
    try:
        assert server.proc is not None
        pid = server.proc.pid
        with httpx.Client(timeout=120) as c:
            for _ in range(args.records):
                body = os.urandom(payload_bytes // 2).hex().encode()
                c.post(server.url + "/v2/collector", content=body,
                       headers=v2_headers(v3_record())).raise_for_status()
        base = rss_mib(pid)
        data_mib = args.records * payload_bytes / 2**20
        for fmt in ("ndjson", "csv", "json"):
            with PeakRss(pid) as peak, httpx.stream(
                "GET", f"{server.url}/api/records?format={fmt}", timeout=600
            ) as resp:
                size = sum(len(chunk) for chunk in resp.iter_bytes()) / 2**20
            rows.append([f"GET /api/records?format={fmt}", f"{size:,.0f}", f"{base:.0f}",
                         f"{peak.peak:.0f}", f"{peak.peak - base:.0f}",
                         f"{(peak.peak - base) / size:.2f}"])
        env = {**os.environ, "DATABASE_URL": url}
        proc = subprocess.Popen([sys.executable, "-m", "downlink", "export",
                                 str(tmp / "dump.ndjson")], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with PeakRss(proc.pid) as peak:
            proc.wait()
        size = (tmp / "dump.ndjson").stat().st_size / 2**20
        rows.append(["downlink export (its own process)", f"{size:,.0f}", "-",
                     f"{peak.peak:.0f}", "-", f"{peak.peak / size:.2f}"])
    finally:
        server.stop()
        if pg is not None:
            pg.stop()
    result = table(["answer", "MiB sent", "RSS before MiB", "peak RSS MiB",
                    "peak above before", "peak growth / MiB sent"], rows)
    print(result)
    body = (
        f"## Memory of large exports ({args.database})\n\n"
        f"`python bench/memory.py --exports --records {args.records} "
        f"--database {args.database}` — {about}\n\n"
        f"{args.records} records of 4 MiB ({data_mib:,.0f} MiB) stored through the "
        "collector, then read back whole in each format (JSON: the first page, cut at "
        "DOWNLINK_API_PAGE_BYTES). *RSS before* is the server's RSS once the records were "
        "stored, measured in the same run. Before answers were streamed, the same "
        "download of 24 such records (96 MiB) grew the server by 288 MiB "
        "(`tests/api/test_records_streaming.py` against the old code), and issue 9 saw "
        "2.7 GB (JSON), 4.0 GB (NDJSON) and 1.5 GB (CSV) for 10,000 large records.\n\n"
        + result
    )
    if not args.no_write:
        write_section(f"memory-exports-{args.database}", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--exports", action="store_true")
    parser.add_argument("--records", type=int, default=64)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.exports:
        exports(args)
        return
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
