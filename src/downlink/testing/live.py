"""Run ``downlink serve`` (or ``downlink consume``) as a real subprocess on a free port,
for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from downlink.testing import forkserver
from downlink.testing.postgres import free_port


class LiveServer:
    """A server process; ``url`` is its base address."""

    def __init__(self, database_url: str, *, workers: int = 1,
                 env: Mapping[str, str] | None = None, log: Path | None = None,
                 command: str = "serve") -> None:
        self.database_url = database_url
        self.workers = workers
        # "serve", or "consume" (its /-/health and /metrics only, one process).
        self.command = command
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(env or {})
        self.log = log
        self.proc: subprocess.Popen[bytes] | forkserver.ForkedProcess | None = None

    def start(self, timeout: float = 120.0) -> LiveServer:
        """Start the server and wait until it answers /-/health on its own port.

        A server normally answers within a few seconds; the long default is for a
        loaded 2-core machine, where a 2-worker server was seen taking 40-48 s (a
        server that exits stops the wait at once, whatever the timeout).

        The port is free when chosen, but another test process may take it before the
        server binds it (seen: a test then talked to another test's server). So the
        answer counts only once this process holds the listening socket, and a server
        that exits while another process listens on its port is started again on a
        new port (twice at most)."""
        for attempt in range(3):
            try:
                return self._start(timeout)
            except _PortTaken:
                if attempt == 2:
                    raise RuntimeError(f"port {self.port} taken three times") from None
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> LiveServer:
        env = {**os.environ, **self.env, "DATABASE_URL": self.database_url}
        argv = ["-m", "downlink", self.command, "--port", str(self.port),
                *(["--workers", str(self.workers)] if self.command == "serve" else []),
                "--log-level", "warning"]
        forks = forkserver.installed()
        if forks is not None:  # the same command, forked from a warm interpreter
            self.proc = forks.spawn(argv, env=env, log=self.log)
        else:
            out = open(self.log, "ab") if self.log else None  # noqa: SIM115
            try:
                self.proc = subprocess.Popen(
                    [sys.executable, *argv], env=env, stdout=out or subprocess.DEVNULL,
                    stderr=out or subprocess.DEVNULL, start_new_session=True,
                )
            finally:
                if out is not None:  # the child has its own copy
                    out.close()
        deadline = time.monotonic() + timeout
        # One client for the polls: each httpx.get() builds an SSL context (certifi's
        # bundle parsed again), about 50 ms of CPU, more than the poll itself.
        with httpx.Client(timeout=1) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    if _listeners(self.port):
                        self.proc = None
                        raise _PortTaken()
                    raise RuntimeError(f"server exited with {self.proc.returncode}")
                try:
                    answered = client.get(self.url + "/-/health").status_code == 200
                except httpx.HTTPError:
                    answered = False
                if answered and _listeners(self.port) & _sockets(self.proc.pid):
                    return self
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not answer /-/health in time")

    def kill(self) -> None:
        """SIGKILL the server and all its workers, as a crash would."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM), or kill it after 15 s."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                self.kill()
            self.proc = None


class _PortTaken(Exception):
    """Another process listens on the port this server was to use."""


def _listeners(port: int) -> set[str]:
    """The inodes of the TCP sockets listening on ``port`` (any process)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.add(fields[9])
    return found


def _sockets(pid: int) -> set[str]:
    """The inodes of the sockets process ``pid`` has open."""
    found: set[str] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found
