"""``downlink.testing.cli.run`` gives what ``subprocess.run`` gives, forked or not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from downlink.testing import cli, forkserver


@pytest.fixture(params=["forked", "plain"])
def mode(request: pytest.FixtureRequest) -> Iterator[str]:
    before = forkserver.installed()
    if request.param == "plain":
        forkserver.install(None)
    elif before is None:
        pytest.skip("no fork server in this run (DOWNLINK_TEST_FORKSERVER=0)")
    try:
        yield str(request.param)
    finally:
        forkserver.install(before)


def test_status_and_output_apart(mode: str) -> None:
    done = cli.run(["--version"], timeout=120)
    assert done.returncode == 0
    assert done.stdout.startswith("downlink, version") and done.stderr == ""

    bad = cli.run(["no-such-command"], timeout=120)
    assert bad.returncode == 2
    assert bad.stdout == "" and "No such command 'no-such-command'" in bad.stderr


def test_the_environment_given_is_added() -> None:
    done = cli.run(["settings"], env={"DATABASE_URL": "sqlite:////nowhere/given.db"},
                   timeout=120)
    assert done.returncode == 0, done.stderr
    assert "given.db" in done.stdout
