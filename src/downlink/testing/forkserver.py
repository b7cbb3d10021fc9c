"""Start ``python -m downlink ...`` processes by forking an interpreter that has the
third-party libraries imported already (for tests and benchmarks).

A ``downlink serve`` costs about 2.8 s of CPU to start on a 2-core machine, most of it
importing FastAPI, pydantic, SQLAlchemy, Alembic, Mako, httpx, click and Downlink; the
test suite starts hundreds. A :class:`ForkServer` is one interpreter, started once,
that imports those (:data:`PRELOAD`) and then forks a child per request. The child
starts a new session, takes the requested environment, working directory, ``sys.path``
(``PYTHONPATH``) and log file, and runs the module as ``python -m`` would (``runpy``,
``__name__ == "__main__"``). Nothing imported beforehand reads the environment when
imported (Downlink reads its settings when a command runs), with one exception that
does not matter here: prometheus-client picks its multiprocess mode when imported, and
``downlink serve --workers N`` sets ``PROMETHEUS_MULTIPROC_DIR`` only for the workers
it spawns, fresh interpreters. Nothing imported beforehand starts a thread (chdb, which
does, is left for the child to import): the fork copies one thread only.

A child is not a child of the caller: :class:`ForkedProcess` learns its exit status
from the fork server over the connection that asked for it (one connection per child),
so it answers ``poll``, ``wait`` and ``returncode`` as :class:`subprocess.Popen` does.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import runpy
import selectors
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path

from downlink.gc_pauses import freeze_after_startup

# Imported by the fork server before it forks: what a Downlink process imports anyway
# and does not configure from the environment when imported.
PRELOAD = (
    "asyncio",
    "logging.config",
    "click",
    "orjson",
    "httpx",
    "jinja2",
    "sqlalchemy",
    "sqlalchemy.dialects.postgresql",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.ext.compiler",
    "psycopg",
    "alembic",
    "alembic.command",
    "alembic.config",
    "alembic.runtime.migration",
    "alembic.operations",
    "mako.template",
    "pydantic",
    "pydantic.v1",
    "numpy",
    "fastapi",
    "fastapi.openapi.utils",
    "starlette.applications",
    "starlette.routing",
    "starlette.responses",
    "uvicorn",
    "uvicorn.config",
    "uvicorn.server",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.websockets_impl",
    "uvicorn.lifespan.on",
    "uvicorn.loops.uvloop",
    "jsonschema",
    "zstandard",
    # Downlink itself: its modules read no environment when imported (settings are
    # read when a command runs, DOWNLINK_SOURCES' extra modules loaded then; the
    # built-in sources the CLI lists at import are the same for every process).
    "downlink.cli.main",
    "downlink.app",
)
_REAP_SECONDS = 0.02


class ForkedProcess:
    """A process the fork server started: ``pid``, ``poll()``, ``wait()``,
    ``returncode`` (negative: killed by that signal), as :class:`subprocess.Popen`."""

    def __init__(self, conn: socket.socket, pid: int, args: Sequence[str]) -> None:
        self._conn = conn
        self._buffer = b""
        self.pid = pid
        self.args = list(args)
        self.returncode: int | None = None

    def _read(self, timeout: float | None) -> None:
        if self.returncode is not None:
            return
        self._conn.settimeout(timeout)
        try:
            while b"\n" not in self._buffer:
                chunk = self._conn.recv(4096)
                if not chunk:  # the fork server went away: the status is lost
                    self.returncode = -9
                    break
                self._buffer += chunk
        except (TimeoutError, BlockingIOError):
            return
        if self.returncode is None:
            self.returncode = int(json.loads(self._buffer.split(b"\n", 1)[0])["status"])
        self._conn.close()

    def poll(self) -> int | None:
        self._read(0.0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._read(timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)


class ForkServer:
    """The forking interpreter: :meth:`start` it once, :meth:`spawn` many, :meth:`stop`."""

    def __init__(self, preload: Sequence[str] = PRELOAD) -> None:
        self.preload = list(preload)
        self._dir = Path(tempfile.mkdtemp(prefix="downlink-forkserver-"))
        self.path = str(self._dir / "socket")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> ForkServer:
        ready = self._dir / "ready"
        with open(self._dir / "log", "ab") as log:  # the child has its own copy
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "downlink.testing.forkserver", self.path,
                 ",".join(self.preload)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                # numpy's OpenBLAS starts its threads when loaded: one, before forking.
                env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
            )
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"fork server exited with {self.proc.returncode}: "
                    + (self._dir / "log").read_text(errors="replace")[-2000:]
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("fork server did not start in time")
            time.sleep(0.02)
        return self

    def spawn(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: str | None = None,
              log: Path | None = None, err_log: Path | None = None) -> ForkedProcess:
        """Start ``python argv...`` (``argv`` begins with ``-m``, a module name), its
        standard output and error appended to ``log`` (standard error to ``err_log``
        if given; None: discarded)."""
        if len(argv) < 2 or argv[0] != "-m":
            raise ValueError("argv must start with -m MODULE")
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(self.path)
        request = {"argv": list(argv), "env": dict(env), "cwd": cwd or os.getcwd(),
                   "log": str(log) if log is not None else None,
                   "err_log": str(err_log) if err_log is not None else None}
        conn.sendall(json.dumps(request).encode() + b"\n")
        buffer = b""
        while b"\n" not in buffer:
            chunk = conn.recv(4096)
            if not chunk:
                conn.close()
                raise RuntimeError("the fork server closed the connection")
            buffer += chunk
        first, rest = buffer.split(b"\n", 1)
        process = ForkedProcess(conn, int(json.loads(first)["pid"]), argv)
        process._buffer = rest
        return process

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        with contextlib.suppress(OSError):
            for item in self._dir.iterdir():
                item.unlink()
            self._dir.rmdir()


_installed: ForkServer | None = None


def install(server: ForkServer | None) -> None:
    """Make :class:`~downlink.testing.live.LiveServer` and
    :func:`downlink.testing.cli.run` start their processes through ``server`` (None:
    as plain subprocesses again)."""
    global _installed
    _installed = server


def installed() -> ForkServer | None:
    """The fork server :func:`install` made current, if any."""
    return _installed


# -- the fork server process ---------------------------------------------------


def _read_request(conn: socket.socket) -> dict[str, object]:
    buffer = b""
    while b"\n" not in buffer:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a request")
        buffer += chunk
    request: dict[str, object] = json.loads(buffer.split(b"\n", 1)[0])
    return request


def _child(request: dict[str, object]) -> int:
    """In the forked child: become the requested process, run it, give its status."""
    os.setsid()
    log, err_log = request["log"], request.get("err_log")
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    out = os.open(str(log) if log else os.devnull, flags)
    err = os.open(str(err_log), flags) if err_log else out
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)
    for fd in {null, out, err}:
        os.close(fd)
    env = request["env"]
    assert isinstance(env, dict)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in env.items()})
    os.chdir(str(request["cwd"]))
    # As ``python -m`` would set it up: the working directory first, then PYTHONPATH.
    extra = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
             if p]
    sys.path[:] = [os.getcwd(), *extra, *[p for p in sys.path[1:] if p not in extra]]
    importlib.invalidate_caches()
    argv = [str(a) for a in request["argv"]]  # type: ignore[attr-defined]
    module = argv[1]
    sys.argv = [module, *argv[2:]]
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - reported as python would, then the status
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    return code


def serve_forever(path: str, preload: Sequence[str]) -> None:
    """The fork server's loop: accept a request, fork, report each child's status."""
    for name in preload:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    # What the preload made is frozen out of the collector's scans: a child's own
    # startup collection (``downlink.gc_pauses``) then walks only what the child made,
    # not the 150,000 objects of the libraries (160 ms of CPU a child).
    freeze_after_startup()
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    Path(path).with_name("ready").touch()
    while True:
        for _key, _events in selector.select(_REAP_SECONDS):
            conn, _addr = listener.accept()
            try:
                request = _read_request(conn)
            except (OSError, ValueError):
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    selector.close()
                    listener.close()
                    conn.close()
                    for other in children.values():
                        other.close()
                    code = _child(request)
                finally:
                    os._exit(code)
            children[pid] = conn
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            done = children.pop(pid, None)
            if done is not None:
                with contextlib.suppress(OSError):
                    code = os.waitstatus_to_exitcode(status)
                    done.sendall(json.dumps({"status": code}).encode() + b"\n")
                done.close()
        if os.getppid() != parent:  # whoever started it is gone
            return


if __name__ == "__main__":
    serve_forever(sys.argv[1], [n for n in sys.argv[2].split(",") if n])
