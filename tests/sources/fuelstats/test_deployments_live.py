"""Failures before a successful deployment over HTTP, on both databases.

Random (seeded) installations and deployment logs posted to a real server in shuffled
chunks (logs before their installation, subtasks, other tasks), installations replaced
with another release, rules changed and the refilter job run; after each phase the
dashboard's answer (kept by the ``fuelstats_deployments`` consumer after the ack) must
equal the old read-time query over the rows, per release, and the kept counts a
rebuild from the rows. Then the consumer's rows and counts are deleted and
``downlink reprocess`` brings back the same answers, twice.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner
from sqlalchemy import Engine, create_engine, delete

from downlink.cli.main import cli
from downlink.sources.fuelstats.counts import FAILURES
from downlink.sources.fuelstats.deployments import NAME
from downlink.sources.fuelstats.tables import counts as counts_table
from downlink.sources.fuelstats.tables import deployments
from downlink.testing.consumers import wait_caught_up
from downlink.testing.live import LiveServer
from tests.sources.fuelstats import reference
from tests.sources.fuelstats.client import minimal, nailgun_task, ok, post, write_rules
from tests.sources.fuelstats.test_counts import kept, recomputed

UIDS = [f"dep-{n}" for n in range(12)]


def _structure(uid: str, release: str, build: str) -> dict[str, Any]:
    return minimal(uid, fuel_release={"release": release, "feature_groups": [], "api": "1",
                                      "build_id": build})


def _logs(rng: random.Random) -> list[dict[str, Any]]:
    found = []
    for uid in UIDS:
        for ext in rng.sample(range(1, 40), rng.randint(0, 12)):
            name = rng.choice(("deployment", "deployment", "deployment", "verify_networks"))
            log = nailgun_task(uid, ext, name=name,
                               status=rng.choice(("ready", "error", "error")),
                               parent=rng.choice((None, None, None, 1)))
            log["body"]["cluster_id"] = rng.choice((1, 2, 3, None))
            found.append(log)
    rng.shuffle(found)
    return found


def _answers(client: httpx.Client) -> dict[str | None, Any]:
    wait_caught_up(client)
    found: dict[str | None, Any] = {}
    for release in (None, "8.0", "9.0"):
        params = {} if release is None else {"release": release}
        found[release] = client.get("/fuel.json", params=params).json()["failures_before_success"]
    return found


def _check(client: httpx.Client, engine: Engine) -> dict[str | None, Any]:
    answers = _answers(client)
    with engine.connect() as conn:
        for release, answer in answers.items():
            assert answer == reference.failures_before_success(conn, release), release
    today = dt.datetime.now(dt.UTC).date().isoformat()
    ranged = client.get("/fuel.json", params={"from": today, "to": today}).json()
    assert ranged["failures_before_success"] == answers[None]
    assert kept(engine) == recomputed(engine)
    return answers


def _reprocess(url: str) -> None:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    result = CliRunner().invoke(cli, ["reprocess", "--source", "fuelstats", "--consumer", NAME,
                                      "--since", today, "--until", today],
                                env={"DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    assert f"through {NAME}" in result.output


def test_counts_follow_the_logs_structures_and_rules(
    fuel_server: Callable[..., LiveServer], new_database: Callable[[str], str], tmp_path: Path
) -> None:
    url = new_database("deployments")
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"9.0": None, "8.0": {"good": None}}))
    env = {"DOWNLINK_FUEL_FILTERING_RULES": str(rules), "DOWNLINK_FUEL_REPORT_CACHE_S": "0"}
    server = fuel_server(env, database_url=url)
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    rng = random.Random(12)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            logs = _logs(rng)
            half = len(logs) // 2
            for start in range(0, half, 25):  # logs before their installations
                ok(post(client, "action_logs", {"action_logs": logs[start:start + 25]}),
                   "action_logs")
            for n, uid in enumerate(UIDS[:9]):
                body = _structure(uid, ("8.0", "9.0")[n % 2], ("good", "qa")[n % 3 == 0])
                ok(post(client, "installation_structure", body), "installation_structure", 201)
            first = _check(client, engine)
            assert first[None]["environments"] > 0
            for start in range(half, len(logs), 25):
                ok(post(client, "action_logs", {"action_logs": logs[start:start + 25]}),
                   "action_logs")
            _check(client, engine)
            for uid in UIDS[:4]:  # another release (and build): the counts move with them
                ok(post(client, "installation_structure", _structure(uid, "9.0", "good")),
                   "installation_structure")
            for uid in UIDS[9:]:
                ok(post(client, "installation_structure", _structure(uid, "8.0", "qa")),
                   "installation_structure", 201)
            _check(client, engine)
            write_rules(rules, {"9.0": None, "8.0": None})  # the qa builds are shown now
            assert client.post("/api/v1/fuel/refilter").status_code == 202
            deadline = time.monotonic() + 60
            while client.get("/api/v1/fuel/refilter").json()["state"] != "done":
                assert time.monotonic() < deadline
                time.sleep(0.2)
            before = _check(client, engine)
            rows = kept(engine)

            with engine.begin() as conn:
                conn.execute(delete(deployments))
                conn.execute(delete(counts_table).where(counts_table.c.report == FAILURES))
            assert _answers(client)[None] == {"average": None, "environments": 0}
            for _ in range(2):  # twice: the same again
                _reprocess(url)
                assert _check(client, engine) == before
                assert kept(engine) == rows
    finally:
        engine.dispose()
