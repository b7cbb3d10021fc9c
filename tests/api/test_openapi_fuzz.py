"""Property-based fuzzing of every operation in /openapi.json against a live server.

Schemathesis reads the document the server publishes, generates requests from it (valid
and invalid parameters, bodies and headers) and fails on any 5xx, any status code the
document does not declare, any answer whose content type or body does not match what
it declares, and an ``Allow`` header that misstates the methods. One live server per
database (SQLite and PostgreSQL) serves every operation's examples; the number of
examples per operation is bounded so the whole run stays within a minute or two.

The examples are the same on every run (``derandomize``), so CI is a gate rather than a
lottery; to explore further, run with ``DOWNLINK_FUZZ_EXAMPLES=500
DOWNLINK_FUZZ_RANDOM=1``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from downlink.testing.live import LiveServer
from downlink.testing.postgres import TempPostgres

EXAMPLES = int(os.environ.get("DOWNLINK_FUZZ_EXAMPLES", "10"))
RANDOM = os.environ.get("DOWNLINK_FUZZ_RANDOM") == "1"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    allow_header_conformance,
    unsupported_method,
]


@pytest.fixture(scope="module")
def fuzzed_server(
    db_kind: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LiveServer]:
    """One live server per database for every operation's examples."""
    tmp = tmp_path_factory.mktemp(f"fuzz-{db_kind}")
    if db_kind == "sqlite":
        url = f"sqlite:///{tmp / 'fuzz.db'}"
    else:
        pg: TempPostgres = request.getfixturevalue("postgres")
        url = pg.create_database("fuzz_openapi")
    server = LiveServer(url, log=Path(tmp) / "server.log").start()
    try:
        yield server
    finally:
        server.stop()
        if db_kind != "sqlite":
            pg.drop_database("fuzz_openapi")


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: LiveServer) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(fuzzed_server.url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_its_documented_promises(case: Case) -> None:
    case.call_and_validate(checks=CHECKS, timeout=30)
