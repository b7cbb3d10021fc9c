"""The msgspec shortcut of action-log validation never accepts what the schema refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from downlink.sources.fuelstats import schemas
from downlink.sources.fuelstats.fast_check import action_logs_valid

# Values of every JSON type, including the edges: bool (not a number), floats that are
# whole, integers past 64 bits, null.
ANY = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False,
                                                                       allow_infinity=False),
    st.sampled_from([1.0, 0.0, "", "x", "2016-05-01T10:00:00", [], {}, [1, "a"], {"a": 1}]),
)


def field(good: st.SearchStrategy[Any], bad: int = 25) -> st.SearchStrategy[Any]:
    """A good value, and about once in ``bad`` anything (so whole bodies are often valid
    and the shortcut's acceptance is what gets tested)."""
    return st.integers(0, bad - 1).flatmap(lambda k: ANY if k == 0 else good)


NUMBER = st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False,
                                                              allow_infinity=False))
TEXT = st.text(max_size=5)


def maybe(d: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A dict with any subset of ``d``'s keys, plus sometimes an unknown one."""
    return st.fixed_dictionaries({}, optional={**d, "extra": ANY})


INFO = maybe({
    "request_data": field(st.just({"password": "x"})),
    "response_data": field(st.just({})),
    "parent_task_id": field(st.one_of(st.none(), NUMBER)),
    "subtasks_ids": field(st.just([1, 2])),
    "operation": field(TEXT),
    "nodes_from_resp": field(st.just([])),
    "ended_with_status": field(TEXT),
    "message": field(st.one_of(st.none(), TEXT)),
    "output": field(st.one_of(st.none(), st.just({}))),
})
BODY = maybe({
    "id": field(NUMBER),
    "actor_id": field(st.one_of(st.none(), TEXT)),
    "action_group": field(TEXT),
    "action_name": field(TEXT),
    "action_type": field(st.sampled_from(["http_request", "nailgun_task"])),
    "start_timestamp": field(TEXT),
    "end_timestamp": field(st.one_of(st.none(), TEXT)),
    "additional_info": field(INFO),
    "is_sent": field(st.booleans()),
    "cluster_id": field(st.one_of(st.none(), NUMBER)),
    "task_uuid": field(st.one_of(st.none(), TEXT)),
})
ITEM = field(
    st.fixed_dictionaries(
        {"master_node_uid": field(TEXT), "external_id": field(st.integers(-(2**65), 2**65)),
         "body": field(BODY)},
        optional={"extra": ANY},
    ),
)
REQUEST = field(
    st.one_of(
        st.fixed_dictionaries({"action_logs": field(st.lists(ITEM, max_size=4))}),
        st.fixed_dictionaries({"action_logs": field(st.lists(ITEM, max_size=4))},
                              optional={"other": ANY}),
    ),
    bad=10,
)


def schema_accepts(raw: bytes) -> bool:
    return schemas.request_error("action_logs", orjson.loads(raw)) is None


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(REQUEST)
def test_fast_acceptance_implies_schema_acceptance(body: Any) -> None:
    raw = json.dumps(body).encode()
    if action_logs_valid(raw):
        assert schema_accepts(raw), raw


@pytest.mark.parametrize("raw", [
    # Duplicate keys: the data (orjson) keeps the last one.
    b'{"action_logs":[{"master_node_uid":"a","external_id":1,"body":'
    b'{"action_type":"http_request","action_type":5}}]}',
    b'{"action_logs":[{"master_node_uid":"a","external_id":1,"body":{"action_type":'
    b'"http_request","action_type":"nailgun_task","additional_info":{"parent_task_id":"x"}}}]}',
    b'{"action_logs":[{"master_node_uid":"a","external_id":1,"external_id":"x","body":'
    b'{"action_type":"http_request"}}]}',
    b'{"action_logs":[],"action_logs":{}}',
    # Past 64 bits orjson reads a float, which "integer" refuses.
    b'{"action_logs":[{"master_node_uid":"a","external_id":36893488147419103232,"body":'
    b'{"action_type":"http_request"}}]}',
])
def test_edge_cases_go_to_the_schema(raw: bytes) -> None:
    assert not action_logs_valid(raw) or schema_accepts(raw)


def test_valid_bodies_take_the_shortcut(fixtures_dir: Path) -> None:
    """What statsenderd sends is accepted without the schema (the point of it)."""
    folder = fixtures_dir / "fuel-stats" / "examples"
    for name in ("action_logs_valid_http_request", "action_logs_valid_nailgun_task_one_incomplete"):
        raw = (folder / f"{name}.json").read_bytes()
        assert schema_accepts(raw)
        assert action_logs_valid(raw), name
    assert not action_logs_valid((folder / "action_logs_invalid_external_id_null.json")
                                 .read_bytes())
