"""`downlink reprocess --source ooni --ccs … --testnames …`: the core command takes the
filters the fastpath consumer declares, and a filtered job rescores only the matching
measurements; on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
from click.testing import CliRunner
from sqlalchemy import Engine, select, update

from downlink.cli.main import cli
from downlink.pipeline import reprocess
from downlink.pipeline.consumers import bind, ensure_all, step
from downlink.settings import Settings
from downlink.sources.ooni.submission import mint_uid
from downlink.sources.ooni.tables import fastpath, measurements
from downlink.store import migrate
from downlink.store.engine import make_engine
from tests.sources.ooni.conftest import fixture_measurements

STALE = "stale"


def _filled(db_url: str) -> tuple[Engine, str]:
    """Every fixture measurement logged today and scored; returns (engine, today)."""
    settings = Settings(database_url=db_url)
    engine = make_engine(settings, writer=True)
    migrate.upgrade(engine, sources=settings.registry)
    now = time.time()
    midnight = now - now % 86400
    rows = []
    for i, body in enumerate(fixture_measurements().values()):
        stored = orjson.dumps(body)
        received = midnight + i
        cc, name = str(body["probe_cc"]), str(body["test_name"])
        rows.append({
            "measurement_uid": mint_uid(datetime.fromtimestamp(received, UTC), cc, name, stored),
            "report_id": str(body.get("report_id") or ""), "probe_cc": cc,
            "probe_asn": int(str(body["probe_asn"]).removeprefix("AS")), "test_name": name,
            "ts_reception": received, "is_verified": "u", "body": stored,
        })
    (bound,) = [b for b in bind(settings.registry) if b.name == "ooni_fastpath"]
    with engine.begin() as conn:
        conn.execute(measurements.insert(), rows)
        ensure_all(conn, [bound])
    while True:
        with engine.begin() as conn:
            if not step(conn, bound):
                break
    return engine, datetime.fromtimestamp(midnight, UTC).date().isoformat()


def _scores(engine: Engine) -> dict[tuple[str, str], list[str]]:
    """Each (country, test)'s scores, STALE where they were not rescored."""
    out: dict[tuple[str, str], list[str]] = {}
    with engine.connect() as conn:
        found = conn.execute(select(fastpath.c.probe_cc, fastpath.c.test_name, fastpath.c.scores))
        for cc, name, scores in found:
            out.setdefault((cc, name), []).append(STALE if scores == STALE else "fresh")
    return out


def _run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["reprocess", *args])


def test_a_filtered_reprocess_rescores_only_the_matching_measurements(db_url: str) -> None:
    engine, today = _filled(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(update(fastpath).values(scores=STALE))
        span = ["--source", "ooni", "--since", today, "--until", today, "--database-url", db_url]

        dry = _run(*span, "--ccs", "it", "--testnames", "tor,torsf", "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert "would reprocess 3 ooni_measurements row(s) through ooni_fastpath" in dry.output

        done = _run(*span, "--ccs", "it", "--testnames", "tor,torsf")
        assert done.exit_code == 0, done.output
        assert "reprocessed 3 row(s) through ooni_fastpath" in done.output
        scores = _scores(engine)
        assert sum(len(v) for v in scores.values()) == 21  # nothing else was deleted
        assert scores.pop(("IT", "tor")) == ["fresh"]
        assert scores.pop(("IT", "torsf")) == ["fresh", "fresh"]
        assert all(v == [STALE] * len(v) for v in scores.values()), scores

        # Underscores are optional; one filter alone narrows too.
        done = _run(*span, "--testnames", "web_connectivity", "--ccs", "IR,CN")
        assert done.exit_code == 0, done.output
        assert "reprocessed 3 row(s)" in done.output
        scores = _scores(engine)
        assert scores[("IR", "web_connectivity")] == ["fresh", "fresh"]
        assert scores[("CN", "web_connectivity")] == ["fresh"]
        assert scores[("US", "web_connectivity")] == [STALE, STALE]

        # The job status (the /consumers page) shows the filters.
        with engine.connect() as conn:
            newest = reprocess.recent(conn)[0]
        assert newest["params"]["filters"] == {"ccs": ["CN", "IR"],
                                               "testnames": ["webconnectivity"]}

        # Bad values and filters a consumer does not declare are usage errors.
        bad = _run(*span, "--ccs", "ITA")
        assert bad.exit_code == 2 and "not a two-letter country code: 'ITA'" in bad.output
        other = ["--source", "clearlinux", "--since", today, "--until", today,
                 "--database-url", db_url, "--ccs", "IT"]
        refused = _run(*other)
        assert refused.exit_code == 2
        assert "consumer 'clearlinux_crashes' of source 'clearlinux' has no such filter" in (
            refused.output
        )

        # The OONI command (its archive) takes the same values the same way.
        old = CliRunner().invoke(cli, ["ooni", "reprocess", "--since", today, "--until",
                                       today + "T01:00:00", "--ccs", "I", "--database-url",
                                       db_url])
        assert old.exit_code == 2 and "not a two-letter country code: 'I'" in old.output
    finally:
        engine.dispose()
