"""The fork server starts ``python -m`` processes as a plain interpreter would."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from downlink.testing.forkserver import ForkServer
from downlink.testing.postgres import free_port


@pytest.fixture(scope="module")
def forks() -> Iterator[ForkServer]:
    server = ForkServer().start()
    try:
        yield server
    finally:
        server.stop()


def test_a_child_runs_the_module_with_its_arguments_and_status(
    forks: ForkServer, tmp_path: Path
) -> None:
    log = tmp_path / "out.log"
    done = forks.spawn(["-m", "downlink", "--version"], env=dict(os.environ), log=log)
    assert done.wait(60) == 0
    assert "downlink, version" in log.read_text()

    bad = forks.spawn(["-m", "downlink", "no-such-command"], env=dict(os.environ), log=log)
    assert bad.wait(60) == 2
    assert "No such command 'no-such-command'" in log.read_text()


def test_a_child_takes_the_environment_and_directory_given(
    forks: ForkServer, tmp_path: Path
) -> None:
    log = tmp_path / "out.log"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'given.db'}"}
    env.pop("DOWNLINK_SOURCES", None)
    done = forks.spawn(["-m", "downlink", "settings"], env=env, cwd=str(tmp_path), log=log)
    assert done.wait(60) == 0, log.read_text()
    assert "given.db" in log.read_text()


def test_wait_times_out_and_a_signal_gives_a_negative_status(
    forks: ForkServer, tmp_path: Path
) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    proc = forks.spawn(["-m", "downlink", "serve", "--port", str(free_port())], env=env,
                       log=tmp_path / "serve.log")
    assert proc.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(0.2)
    assert os.getsid(proc.pid) == proc.pid  # its own session, as start_new_session=True
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    assert proc.poll() == -signal.SIGKILL


def test_a_failing_module_reports_its_traceback(forks: ForkServer, tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    done = forks.spawn(["-m", "downlink.no_such_module"], env=dict(os.environ), log=log)
    assert done.wait(60) == 1
    assert "No module named downlink.no_such_module" in log.read_text()


def test_spawn_wants_a_module(forks: ForkServer) -> None:
    with pytest.raises(ValueError, match="-m MODULE"):
        forks.spawn(["script.py"], env={})


def test_pythonpath_and_arguments_reach_the_module(forks: ForkServer, tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "probe_module.py").write_text(
        "import os, sys\nprint('argv', sys.argv[1:], 'cwd', os.getcwd(), __name__)\n"
    )
    log = tmp_path / "out.log"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "lib")}
    done = forks.spawn(["-m", "probe_module", "a", "b"], env=env, cwd=str(tmp_path), log=log)
    assert done.wait(60) == 0, log.read_text()
    assert log.read_text() == f"argv ['a', 'b'] cwd {tmp_path} __main__\n"


def test_the_fork_server_runs_no_thread_to_lose_at_a_fork(forks: ForkServer) -> None:
    assert forks.proc is not None
    assert len(os.listdir(f"/proc/{forks.proc.pid}/task")) == 1
