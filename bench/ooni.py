"""OONI benchmark: fastpath scoring per core, and measurement submissions per second.

* **Scoring**: the 21 fixture measurements replicated to ``--measurements`` (default
  1,000,000, the issue's target), each scored to a fastpath row in one
  process (one core). The baseline in the same run is only parsing the same stored
  bodies (``orjson.loads``), the floor any scorer pays.
* **Submissions**: ``POST /report/{report_id}`` with a ~50 KB web_connectivity body,
  driven by wrk, against ``downlink serve`` on SQLite and PostgreSQL (every 200 is a
  committed row: checked after the run) and against the do-nothing ASGI app
  (``ceiling.py``) with the same generator, workers and body.

    python bench/ooni.py [--measurements 1000000] [--seconds 10] [--connections 32]
                         [--workers 1,2] [--databases sqlite,postgresql] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import create_engine, func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, table, write_section  # noqa: E402
from load import need_wrk  # noqa: E402

from downlink.sources.ooni import fastpath  # noqa: E402
from downlink.sources.ooni.fingerprints import load_default  # noqa: E402
from downlink.sources.ooni.submission import mint_uid  # noqa: E402
from downlink.sources.ooni.tables import measurements  # noqa: E402
from downlink.store.engine import _normalise  # noqa: E402
from downlink.testing.live import LiveServer  # noqa: E402
from downlink.testing.postgres import TempPostgres  # noqa: E402
from ingest import Ceiling  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "ooni" / "measurements"  # beside the clone
BIG = "20250527233111.802678_ID_webconnectivity_5a37ec909dbf14e3.json"

LUA = r"""
wrk.method = "POST"
wrk.path = "@PATH@"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("@BODY@", "rb")
wrk.body = f:read("*all")
f:close()

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def fixture_bodies() -> list[tuple[bytes, str]]:
    """(stored body, uid) of every fixture, received a minute after it started."""
    out = []
    paths = sorted(FIXTURES.glob("*.json"))
    if not paths:
        raise SystemExit(f"no OONI fixture measurements in {FIXTURES}")
    for path in paths:
        msm = json.loads(path.read_text())
        start = fastpath.parse_time(msm["measurement_start_time"]) or 0.0
        stored = orjson.dumps({"format": "json", "content": msm, "is_verified": "u"})
        uid = mint_uid(datetime.fromtimestamp(start + 60, UTC), msm["probe_cc"],
                       msm["test_name"], stored)
        out.append((stored, uid))
    return out


def bench_scoring(n: int) -> list[list[object]]:
    """Rows of the scoring table."""
    fps = load_default()
    bodies = fixture_bodies()
    work = [bodies[i % len(bodies)] for i in range(n)]
    t0, c0 = time.perf_counter(), time.process_time()
    for stored, _uid in work:
        orjson.loads(stored)
    parse_s, parse_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    scored = 0
    for stored, uid in work:
        if fastpath.build_row(stored, uid, "r", fps) is not None:
            scored += 1
    score_s, score_cpu = time.perf_counter() - t0, time.process_time() - c0
    assert scored == n
    load = os.getloadavg()[0]
    per_test: dict[str, float] = {}
    for stored, uid in bodies:
        name = uid.split("_")[2]
        t0 = time.perf_counter()
        for _ in range(200):
            fastpath.build_row(stored, uid, "r", fps)
        per_test[name] = max(per_test.get(name, 0.0), (time.perf_counter() - t0) / 200)
    slowest = sorted(per_test.items(), key=lambda kv: -kv[1])[:3]
    print("slowest tests (us/measurement):",
          ", ".join(f"{k} {v * 1e6:.0f}" for k, v in slowest))
    return [
        ["parse only (orjson.loads)", n, round(n / parse_cpu), round(n / parse_s),
         f"{load:.1f}", "1.00"],
        ["fastpath row (score + flags + columns)", n, round(n / score_cpu), round(n / score_s),
         f"{load:.1f}", f"{parse_cpu / score_cpu:.3f}"],
    ]


def submission_body() -> bytes:
    """A web_connectivity submission of about 50 KB."""
    msm = json.loads((FIXTURES / BIG).read_text())
    body = orjson.dumps({"format": "json", "content": msm})
    pad = 50_000 - len(body)
    msm["test_keys"]["bench_padding"] = "x" * max(0, pad - 20)
    return orjson.dumps({"format": "json", "content": msm})


def open_report(url: str, msm: dict[str, Any]) -> str:
    r = httpx.post(url + "/report", json={
        "data_format_version": "0.2.0", "format": "json", "probe_asn": msm["probe_asn"],
        "probe_cc": msm["probe_cc"], "software_name": "bench", "software_version": "1",
        "test_name": msm["test_name"], "test_start_time": "2025-01-01 00:00:00",
        "test_version": "0.4.3",
    })
    r.raise_for_status()
    rid: str = r.json()["report_id"]
    return rid


def wrk(url: str, path: str, body: Path, seconds: float, connections: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA.replace("@PATH@", path).replace("@BODY@", str(body)))
        script = f.name
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
         "-s", script, url],
        capture_output=True, text=True, check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    res: dict[str, Any] = json.loads(line[len("RESULT "):])
    res["per_s"] = (res["requests"] - res["status_errors"]) / (res["duration_us"] / 1e6)
    return res


def stored(url: str) -> int:
    engine = create_engine(_normalise(url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(measurements)).scalar_one())
    finally:
        engine.dispose()


def bench_submissions(args: argparse.Namespace, tmp: Path) -> tuple[list[list[object]], list[str]]:
    body_path = tmp / "body.json"
    body = submission_body()
    body_path.write_bytes(body)
    msm = orjson.loads(body)["content"]
    rows: list[list[object]] = []
    lost: list[str] = []
    databases = args.databases.split(",")
    pg = TempPostgres(fsync=True).start() if "postgresql" in databases else None
    try:
        for n in [int(w) for w in args.workers.split(",")]:
            with Ceiling(n) as ceiling:
                wrk(ceiling.url, "/report/x", body_path, 3, args.connections)
                top = wrk(ceiling.url, "/report/x", body_path, args.seconds, args.connections)
            rows.append(["do-nothing ASGI", n, round(top["per_s"]), top["p50_us"] / 1000,
                         top["p99_us"] / 1000, top["status_errors"] + top["socket_errors"],
                         "1.00"])
            print(table(["server", "workers", "msm/s", "p50 ms", "p99 ms", "errors", "ratio"],
                        rows[-1:]))
            for db in databases:
                if db == "sqlite":
                    url = f"sqlite:///{tmp / f'ooni-{n}.db'}"
                else:
                    assert pg is not None
                    url = pg.create_database(f"ooni_{n}")
                log = Path(tempfile.gettempdir()) / "ooni-bench-server.log"
                server = LiveServer(url, workers=n, log=log).start()
                try:
                    path = "/report/" + open_report(server.url, msm)
                    wrk(server.url, path, body_path, 3, args.connections)
                    res = wrk(server.url, path, body_path, args.seconds, args.connections)
                finally:
                    server.stop()
                count = stored(url)
                ok = res["requests"] - res["status_errors"]
                if count < ok:
                    lost.append(f"{db} x{n}: {ok} successes but {count} rows")
                rows.append([f"downlink {db}", n, round(res["per_s"]), res["p50_us"] / 1000,
                             res["p99_us"] / 1000, res["status_errors"] + res["socket_errors"],
                             f"{res['per_s'] / top['per_s']:.2f}"])
                print(table(["server", "workers", "msm/s", "p50 ms", "p99 ms", "errors",
                             "ratio"], rows[-1:]))
    finally:
        if pg is not None:
            pg.stop()
    return rows, lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--measurements", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--skip-submissions", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="do not touch the docs")
    args = parser.parse_args()
    about = machine()
    scoring = table(["work", "measurements", "per CPU-second", "per wall second",
                     "load avg at end", "ratio to parsing (CPU)"],
                    bench_scoring(args.measurements))
    print(scoring)
    submissions = "(not run)"
    lost: list[str] = []
    if not args.skip_submissions:
        need_wrk()
        tmp = Path(tempfile.mkdtemp(prefix="downlink-ooni-bench-"))
        try:
            rows, lost = bench_submissions(args, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        submissions = table(["server", "workers", "msm/s", "p50 ms", "p99 ms", "errors",
                             "ratio to ceiling"], rows)
        print(submissions)
        if lost:
            print("LOST MEASUREMENTS:", *lost, sep="\n  ")
    body = (
        "## OONI: fastpath scoring and submissions\n\n"
        f"`python bench/ooni.py --measurements {args.measurements} --seconds "
        f"{args.seconds:g} --connections {args.connections} --workers {args.workers}"
        + (" --skip-submissions" if args.skip_submissions else "") + "` — "
        f"{about}\n\n"
        "**Scoring**: the 21 fixture measurements replicated, each turned into its "
        "fastpath row (scores with the 1,849 shipped fingerprints, date check, flags, "
        "columns) in one process; the baseline is parsing the same bodies. Rates are per "
        "CPU-second of the process (`time.process_time`), which the other work on a "
        "shared machine disturbs less than wall time; both are shown.\n\n"
        + scoring + "\n\n"
        "**Submissions**: `POST /report/{report_id}` with a 50 KB web_connectivity body "
        f"(wrk, {args.connections} connections, {args.seconds:g} s after a 3 s warm-up); "
        "every 200 is a committed row of `ooni_measurements`"
        + (": " + "; ".join(lost) if lost else " (checked: none missing)")
        + ". *ratio* is against the do-nothing ASGI app reading the same body.\n\n"
        + submissions
    )
    if not args.no_write:
        write_section("ooni", body)


if __name__ == "__main__":
    main()
