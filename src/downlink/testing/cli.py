"""Run a ``downlink`` command as a separate process, as a user would, its output
captured (through the installed fork server when there is one)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from downlink.testing import forkserver


def run(args: Sequence[str], *, env: Mapping[str, str] | None = None,
        cwd: str | None = None, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """``python -m downlink ARGS`` with this process's environment plus ``env``; its
    status, standard output and standard error (as :func:`subprocess.run` with
    ``capture_output=True, text=True``). :class:`subprocess.TimeoutExpired` after
    ``timeout`` seconds, the process killed."""
    full = {**os.environ, **(env or {})}
    forks = forkserver.installed()
    if forks is None:
        return subprocess.run([sys.executable, "-m", "downlink", *args], env=full, cwd=cwd,
                              capture_output=True, text=True, timeout=timeout)
    with tempfile.TemporaryDirectory(prefix="downlink-cli-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        proc = forks.spawn(["-m", "downlink", *args], env=full, cwd=cwd, log=out,
                           err_log=err)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            raise
        return subprocess.CompletedProcess(
            ["downlink", *args], code,
            out.read_text(errors="replace") if out.exists() else "",
            err.read_text(errors="replace") if err.exists() else "",
        )
