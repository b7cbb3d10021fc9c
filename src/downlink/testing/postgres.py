"""A throwaway PostgreSQL server started from the installed binaries (initdb, pg_ctl).

Used by the test suite and the benchmarks; never by the server itself. When running as
root the server runs as the ``postgres`` system user, since initdb refuses root.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries could be found or started."""


def find_bindir() -> Path:
    """Return the directory holding initdb and pg_ctl."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    raise PostgresUnavailable("initdb not found: install the postgresql package")


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TempPostgres:
    """One PostgreSQL cluster in a temporary directory, on a free loopback port."""

    def __init__(self, fsync: bool = False, under: str | Path | None = None) -> None:
        self.bindir = find_bindir()
        self.port = free_port()
        # ``under``: the folder to create the cluster in (a big disk), else the temp folder.
        self.root = Path(tempfile.mkdtemp(prefix="downlink-pg-", dir=under))
        self.datadir = self.root / "data"
        self.fsync = fsync
        self._replicated = False
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")
            os.chmod(self.root, 0o755)

    def _run(self, *args: str) -> None:
        cmd = [*self._as_user, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise PostgresUnavailable(f"{' '.join(args[:2])} failed: {proc.stderr.strip()}")

    def start(self) -> TempPostgres:
        """Create the cluster and start the server."""
        self._run(str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--no-locale")
        return self._launch()

    def _launch(self) -> TempPostgres:
        # full_page_writes stays on when a replica or a base backup may be taken: a
        # backup copies pages while they are written and needs them to replay the WAL.
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=200 "
                "-c synchronous_commit=on -c full_page_writes=off")
        if self._replicated:
            opts = opts.replace("full_page_writes=off", "full_page_writes=on")
        self._opts = opts
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-o", opts,
                  "-l", str(self.root / "log"), "-w", "-t", "60", "start")
        return self

    def start_primary(self) -> TempPostgres:
        """Like :meth:`start`, ready for streaming replicas and base backups."""
        self._replicated = True
        return self.start()

    def start_replica(self) -> TempPostgres:
        """A hot-standby streaming replica of this server, started on its own port.

        Made as an operator would: ``pg_basebackup -R -X stream`` from this server (the
        ``-R`` writes ``standby.signal`` and ``primary_conninfo``), then started.
        """
        replica = TempPostgres(fsync=self.fsync)
        replica._replicated = True
        replica._run(str(self.bindir / "pg_basebackup"), "-h", "127.0.0.1",
                     "-p", str(self.port), "-U", "postgres", "-D", str(replica.datadir),
                     "-R", "-X", "stream", "-c", "fast")
        return replica._launch()

    def adopt_datadir(self) -> None:
        """Hand a data directory filled by hand (a restored backup) to the server user."""
        if self._as_user:
            subprocess.run(["chown", "-R", "postgres:postgres", str(self.datadir)], check=True)
        os.chmod(self.datadir, 0o700)

    def run_as_server_user(self, *args: str) -> None:
        """Run a PostgreSQL client program as the user owning the data (tests of backups)."""
        self._run(*args)

    def pause(self) -> None:
        """Stop the server but keep its data, as a database outage would."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast",
                  "-w", "stop")

    def resume(self) -> None:
        """Start the server again on the same data directory and port."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-o", self._opts,
                  "-l", str(self.root / "log"), "-w", "-t", "60", "start")

    @property
    def admin_url(self) -> str:
        """URL of the ``postgres`` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        """URL of a database on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create a database (a copy of ``template`` if given) and return its URL."""
        import psycopg

        copy = f' TEMPLATE "{template}"' if template else ""
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{copy}')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, closing other sessions on it."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server and delete its files."""
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate",
                      "-w", "stop")
        except PostgresUnavailable:
            pass
        finally:
            for _ in range(3):
                shutil.rmtree(self.root, ignore_errors=True)
                if not self.root.exists():
                    break
                time.sleep(0.2)
