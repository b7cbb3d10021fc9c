"""Shared OONI test data: the fixture measurements and the default fingerprints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from downlink.sources.ooni.fingerprints import Fingerprints, load_default

MEASUREMENTS = (
    Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "ooni" / "measurements"
)


def fixture_measurements() -> dict[str, dict[str, Any]]:
    """Every fixture measurement by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted(MEASUREMENTS.glob("*.json"))}


@pytest.fixture(scope="session")
def fps() -> Fingerprints:
    """The fingerprints Downlink ships (OONI's fastpath test data)."""
    return load_default()


class OoniServer:
    """A real uvicorn process serving Downlink with the OONI source mounted."""

    def __init__(self, database_url: str, log: Path, workers: int = 1,
                 env: dict[str, str] | None = None) -> None:
        from downlink.testing.postgres import free_port

        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.workers = workers
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OoniServer:
        from tests.sources.ooni.harness import migrate

        migrate(self.database_url)
        root = Path(__file__).resolve().parents[3]
        env = {
            **os.environ,
            **self.env,
            "DATABASE_URL": self.database_url,
            "DOWNLINK_BATCH_WAIT_MS": "1",
            "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root),
                                          os.environ.get("PYTHONPATH", "")]),
        }
        out = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory",
             "tests.sources.ooni.harness:app_from_env", "--port", str(self.port),
             "--workers", str(self.workers), "--log-level", "warning"],
            env=env, stdout=out, stderr=out, start_new_session=True, cwd=root,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/-/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            self.proc = None


@pytest.fixture
def ooni(db_url: str, tmp_path: Path) -> Iterator[OoniServer]:
    """A live server with the OONI source, on the database under test."""
    server = OoniServer(db_url, tmp_path / "server.log").start()
    try:
        yield server
    finally:
        server.stop()
