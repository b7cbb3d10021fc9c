"""A real server with the fuel-stats source mounted, until the core registry mounts it.

``app()`` is a uvicorn factory: the core app from :func:`create_app` plus the source's
routes, migrated with the source's branch, with its background work
(:class:`~downlink.sources.fuelstats.runtime.Runtime`) started by the lifespan.
:class:`FuelServer` runs it as a subprocess on a free port, like ``LiveServer``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from downlink.app import create_app
from downlink.settings import from_env
from downlink.sources.fuelstats import upgrade
from downlink.sources.fuelstats.source import SOURCE
from downlink.testing.postgres import free_port

ROOT = Path(__file__).resolve().parents[3]


def mount(app: FastAPI) -> FastAPI:
    """Add the source's routes and routers and wrap the lifespan with its runtime."""
    app.router.routes.extend(SOURCE.routes)
    for router in SOURCE.routers:
        app.include_router(router)
    inner = app.router.lifespan_context
    start = SOURCE.extra.get("lifespan")

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[None]:
        async with inner(application):
            if start is None:
                yield
                return
            async with start(application):
                yield

    app.router.lifespan_context = lifespan
    return app


def app() -> FastAPI:
    """uvicorn factory: settings from the environment, schema migrated first."""
    settings = from_env()
    application = create_app(settings, run_migrations=False)
    upgrade.upgrade(application.state.store.engine)
    return mount(application)


class FuelServer:
    """``app()`` served by uvicorn in a subprocess; ``url`` is its base address."""

    def __init__(self, database_url: str, env: Mapping[str, str] | None = None,
                 log: Path | None = None) -> None:
        self.database_url = database_url
        self.env = dict(env or {})
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> FuelServer:
        """Start and wait until /-/health answers."""
        env = {**os.environ, **self.env, "DATABASE_URL": self.database_url}
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "tests.sources.fuelstats.harness:app",
             "--port", str(self.port), "--log-level", "warning"],
            env=env, cwd=ROOT, stdout=out, stderr=out, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/-/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not answer /-/health in time")

    def stop(self) -> None:
        """SIGTERM, or SIGKILL after 15 s."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass
        self.proc = None
