"""``downlink consume`` beside ``downlink serve`` with ``DOWNLINK_RUN_CONSUMERS=off``.

Real processes: a server that takes records and handles none of them, two consume
processes (one SIGKILLed in the middle of the load, the other taking over), records
posted over HTTP. Afterwards every acknowledged record is stored and every derived
count equals a recount from the records (none lost, none counted twice), on both
databases; the server's ``/consumers`` and ``/metrics`` show the lag read from the
cursors, the consume process its own health and counters.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from downlink.cli.main import cli
from downlink.settings import Settings
from downlink.store.engine import make_engine
from downlink.testing.consumers import wait_caught_up
from downlink.testing.live import LiveServer
from tests.sources.clearlinux.derived import recount
from tests.sources.clearlinux.test_sigkill import Load, _stored_events

OFF = {"DOWNLINK_RUN_CONSUMERS": "off"}


def _lag(url: str) -> dict[str, int]:
    answer = httpx.get(url + "/consumers.json", timeout=10)
    assert answer.status_code == 200, answer.text
    return {c["name"]: int(c["lag_records"]) for c in answer.json()["consumers"]}


@pytest.mark.slow
def test_consume_processes_keep_derived_data_of_a_server_with_consumers_off(
    db_url: str, tmp_path: Path
) -> None:
    rng = random.Random(20261201)
    server = LiveServer(db_url, env=OFF, log=tmp_path / "serve.log").start()
    consumers: list[LiveServer] = []
    try:
        # Alone, the server stores and acknowledges, and handles nothing: its watcher
        # sees the backlog grow (read from the cursors, refreshed every second).
        with Load(server.url, seed=1, threads=4) as load:
            time.sleep(1.5)
        assert load.acked, "the load never got going"
        time.sleep(1.2)
        assert _lag(server.url)["clearlinux_crashes"] == len(load.acked)
        acked = list(load.acked)

        consumers = [
            LiveServer(db_url, command="consume", log=tmp_path / f"consume{i}.log").start()
            for i in range(2)
        ]
        with Load(server.url, seed=2, threads=8) as load:
            time.sleep(rng.uniform(0.5, 1.5))
            # Mid-batch, or between two: the other process takes over its consumers
            # (on PostgreSQL the killed session's row locks go with it).
            consumers[0].kill()
            time.sleep(1.0)
        acked += load.acked

        wait_caught_up(server.url, timeout=120)
        missing = set(acked) - _stored_events(server.url)
        assert not missing, f"{len(missing)} acknowledged records lost of {len(acked)}"

        # The lag gauges reach the server's /metrics (its watcher reads the cursors).
        gauge = 'downlink_consumer_lag_records{consumer="clearlinux_crashes"} 0.0'
        deadline = time.monotonic() + 10
        while gauge not in httpx.get(server.url + "/metrics", timeout=10).text:
            assert time.monotonic() < deadline, "the server's lag gauge did not reach 0"
            time.sleep(0.2)
        # The consume processes' own health and counters.
        assert consumers[0].proc is None  # killed above
        health = httpx.get(consumers[1].url + "/-/health", timeout=10)
        assert health.status_code == 200, health.text
        state = health.json()
        assert state["ok"] and state["role"] == "consume"
        assert "clearlinux_crashes" in state["consumers"]
        counter = 'downlink_consumer_handled_records_total{consumer="clearlinux_rollups"}'
        handled = 0.0
        text = httpx.get(consumers[1].url + "/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith(counter):
                handled += float(line.split()[-1])
        assert handled > 0, "the surviving consume process counted no handled record"
        # Its startup was frozen out of the collector's scans, and that collection timed.
        full = 'downlink_gc_pause_seconds_count{generation="2"} '
        assert any(line.startswith(full) and float(line.split()[-1]) >= 1
                   for line in text.splitlines()), "no full collection timed"

        # SIGTERM: the work in flight ends and the process exits (uvicorn re-raises the
        # signal after its shutdown, hence -SIGTERM), without a traceback.
        proc = consumers[1].proc
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) in (0, -signal.SIGTERM)
        consumers[1].proc = None
        assert "Traceback" not in (tmp_path / "consume1.log").read_text()
    finally:
        for c in consumers:
            c.stop()
        server.stop()
    engine = make_engine(Settings(database_url=db_url))
    try:
        check = recount(engine)
    finally:
        engine.dispose()
    assert check["want"]["per_group"], "no crash was grouped"
    assert check["got"] == {k: check["want"][k] for k in check["got"]}


def test_consume_refuses_a_bad_setting_and_an_in_process_analytics_engine(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    db = f"sqlite:///{tmp_path / 'c.db'}"
    bad = runner.invoke(cli, ["consume", "--database-url", db],
                        env={"DOWNLINK_RUN_CONSUMERS": "elsewhere"})
    assert bad.exit_code == 2
    assert "DOWNLINK_RUN_CONSUMERS must be in-process or off" in bad.output
    chdb = runner.invoke(cli, ["consume", "--database-url", db],
                         env={"DOWNLINK_ANALYTICS_URL": f"chdb://{tmp_path / 'ch'}"})
    assert chdb.exit_code == 1
    assert "opens its folder in one process only" in chdb.output
    assert "Traceback" not in bad.output + chdb.output
