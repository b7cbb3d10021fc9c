"""The load generator: ``wrk`` (C, event loop) with a Lua script posting Clear Linux records.

Each request is one single-record ``POST /v2/collector`` with the real 2.3.x client's
headers (underscore names, ``X-Telemetry-TID``, ``application/text`` body) and a unique
``event_id``, so no request is answered as a retransmission. wrk runs in one thread on
its own core-share; it needs far less CPU per request than the Python server, so it is
not the bottleneck (the ceiling run against a do-nothing app shows its headroom).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TID = "6907c830-eed9-4ce9-81ae-76daf8d88f0f"

LUA = r"""
wrk.method = "POST"
wrk.path = "/v2/collector"
wrk.body = "hello from the ingest benchmark"
wrk.headers["record_format_version"] = "4"
wrk.headers["classification"] = "org.clearlinux/bench/ingest"
wrk.headers["severity"] = "1"
wrk.headers["machine_id"] = "fc3bbb5a41a7edaeeaaf42a525c58d8c"
wrk.headers["creation_timestamp"] = tostring(os.time())
wrk.headers["arch"] = "x86_64"
wrk.headers["host_type"] = "no_sv_file|no_pn_file|no_pvr_file"
wrk.headers["build"] = '"12"'
wrk.headers["kernel_version"] = "6.18.44-fc-v657"
wrk.headers["payload_format_version"] = "1"
wrk.headers["system_name"] = "debian"
wrk.headers["board_name"] = "no_bn_file|no_bv_file"
wrk.headers["cpu_model"] = "Intel(R) Xeon(R) Processor"
wrk.headers["bios_version"] = "no_bv_file"
wrk.headers["X-Telemetry-TID"] = "@TID@"
wrk.headers["Content-Type"] = "application/text"

local counter = 0
local prefix = "@PREFIX@"
local machines = @MACHINES@

function request()
  counter = counter + 1
  wrk.headers["event_id"] = prefix .. string.format("%020x", counter)
  if machines > 1 then
    wrk.headers["machine_id"] = string.format("%032x", counter % machines)
  end
  return wrk.format(nil, nil, nil, nil)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


@dataclass
class LoadResult:
    """What one wrk run measured."""

    requests: int
    seconds: float
    status_errors: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def ok(self) -> int:
        """Requests answered with a 2xx status."""
        return self.requests - self.status_errors

    @property
    def per_second(self) -> float:
        """Successful requests per second."""
        return self.ok / self.seconds if self.seconds else 0.0


def need_wrk() -> str:
    """Path of wrk, or exit with an explanation."""
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk not found: apt-get install wrk")
    return found


def run_wrk(
    url: str, seconds: float, connections: int, threads: int = 1, machines: int = 1
) -> LoadResult:
    """Post records to ``url`` for ``seconds`` over ``connections`` connections.

    ``machines`` > 1: the records' machine ids cycle through that many ids (one id
    otherwise), for the sender-binding benchmark.
    """
    script = LUA.replace("@TID@", TID).replace("@PREFIX@", f"{int(time.time() * 1e3):012x}")
    script = script.replace("@MACHINES@", str(max(1, machines)))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        path = Path(f.name)
    try:
        proc = subprocess.run(
            [need_wrk(), "-t", str(threads), "-c", str(connections),
             "-d", f"{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(path), url],
            capture_output=True, text=True, timeout=seconds + 60, check=False,
        )
    finally:
        path.unlink(missing_ok=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            raw = json.loads(line[len("RESULT "):])
            return LoadResult(
                requests=raw["requests"], seconds=raw["duration_us"] / 1e6,
                status_errors=raw["status_errors"], socket_errors=raw["socket_errors"],
                p50_ms=raw["p50_us"] / 1e3, p90_ms=raw["p90_us"] / 1e3,
                p99_ms=raw["p99_us"] / 1e3, max_ms=raw["max_us"] / 1e3,
            )
    raise RuntimeError(f"wrk gave no result: {proc.stdout}\n{proc.stderr}")
