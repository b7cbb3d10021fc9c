"""Reference B8, test_action_logs.py: A2-A8 as black-box HTTP cases (A1: common tests)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.sources.fuelstats.client import err, nailgun_task, ok, post, statuses
from tests.sources.fuelstats.conftest import Served

R = "action_logs"


def stored(client: httpx.Client, uid: str) -> dict[str, Any]:
    """The action logs stored for ``uid`` (JSON API, one page)."""
    resp = client.get(f"/api/v1/json/action_logs/{uid}")
    assert resp.status_code == 200, resp.text
    found: dict[str, Any] = resp.json()
    return found


def test_empty_action_logs_post(served: Served) -> None:
    """A2: an empty list is ok with an empty list of statuses."""
    assert ok(post(served.client, R, {"action_logs": []}), R)["action_logs"] == []


def test_post(served: Served, examples: Callable[[str], Any], uid: str) -> None:
    """A3: three http_request logs are added and stored."""
    body = copy.deepcopy(examples("action_logs_valid_http_request"))
    for item in body["action_logs"]:
        item["master_node_uid"] = uid
    answer = ok(post(served.client, R, body), R)
    assert [i["status"] for i in answer["action_logs"]] == ["added"] * 3
    page = stored(served.client, uid)
    assert page["paging_params"]["total"] == 3
    assert {o["external_id"] for o in page["objs"]} == {0, 1, 2}


def test_post_duplication(served: Served, uid: str) -> None:
    """A4: duplicates within a request collapse; stored rows are never overwritten."""
    first = [nailgun_task(uid, i, start="1", end="2") for i in range(100)]
    assert statuses(ok(post(served.client, R, {"action_logs": first}), R), R) == {"added": 100}
    second = first + [nailgun_task(uid, i, start="3", end="4") for i in range(150)]
    answer = ok(post(served.client, R, {"action_logs": second}), R)
    assert len(answer["action_logs"]) == 150
    assert statuses(answer, R) == {"existed": 100, "added": 50}
    page = stored(served.client, uid)
    assert page["paging_params"]["total"] == 150
    by_id = {o["external_id"]: o["body"] for o in page["objs"]}
    assert all(by_id[i]["start_timestamp"] == "1" for i in range(100))
    assert all(by_id[i]["start_timestamp"] == "3" for i in range(100, 150))


@pytest.mark.parametrize(
    "body",
    [
        "action_logs_invalid_external_id_null",
        {"action_logs": [{"master_node_uid": "x", "external_id": None}]},
        {"action_logs": [{"master_node_uid": "x", "external_id": 1, "body": {}}]},
        {"action_logs": {}},
        {"action_logs": [], "extra": 1},
    ],
)
def test_validation_error(served: Served, examples: Callable[[str], Any], body: Any) -> None:
    """A5: invalid items (and a body without action_type, matching both shapes) are 400."""
    if isinstance(body, str):
        body = examples(body)
    err(post(served.client, R, body), 400)


def test_incomplete_tasks(served: Served, uid: str) -> None:
    """A6: running nailgun tasks (no end_timestamp) are skipped, not stored."""
    logs = [
        nailgun_task(uid, i, end=None if i % 3 == 0 else "2", parent=None if i % 2 == 0 else 1)
        for i in range(100)
    ]
    answer = ok(post(served.client, R, {"action_logs": logs}), R)
    assert len(answer["action_logs"]) == 100
    assert statuses(answer, R) == {"added": 66, "skipped": 34}
    page = stored(served.client, uid)
    assert page["paging_params"]["total"] == 66
    assert all(o["body"]["end_timestamp"] is not None for o in page["objs"])


def test_fixture_one_incomplete(served: Served, examples: Callable[[str], Any], uid: str) -> None:
    """The shared body: the finished task is added, the running one skipped."""
    body = copy.deepcopy(examples("action_logs_valid_nailgun_task_one_incomplete"))
    for item in body["action_logs"]:
        item["master_node_uid"] = uid
    answer = ok(post(served.client, R, body), R)
    assert [(i["external_id"], i["status"]) for i in answer["action_logs"]] == [
        (1, "added"), (2, "skipped")]


@pytest.fixture
def refusing(served: Served) -> Iterator[Callable[[str], None]]:
    """Make the database refuse action logs of one master node (a failing insert)."""
    engine = create_engine(served.database_url.replace("postgresql://", "postgresql+psycopg://"))
    made: list[str] = []

    def refuse(uid: str) -> None:
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                conn.execute(text(
                    "CREATE TRIGGER fuel_refuse BEFORE INSERT ON fuel_action_logs "
                    f"WHEN NEW.master_node_uid = '{uid}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
                ))
            else:
                conn.execute(text(
                    "ALTER TABLE fuel_action_logs ADD CONSTRAINT fuel_refuse "
                    f"CHECK (master_node_uid <> '{uid}') NOT VALID"
                ))
        made.append(uid)

    yield refuse
    with engine.begin() as conn:
        for _ in made:
            if engine.dialect.name == "sqlite":
                conn.execute(text("DROP TRIGGER fuel_refuse"))
            else:
                conn.execute(text("ALTER TABLE fuel_action_logs DROP CONSTRAINT fuel_refuse"))
    engine.dispose()


def test_failed_action_logs(
    served: Served, uid: str, refusing: Callable[[str], None]
) -> None:
    """A7: a chunk the database refuses is 200 with every item failed, nothing stored."""
    refusing(uid)
    logs = [nailgun_task(uid, i) for i in range(100)]
    answer = ok(post(served.client, R, {"action_logs": logs}), R)
    assert statuses(answer, R) == {"failed": 100}
    assert stored(served.client, uid)["paging_params"]["total"] == 0


def test_action_type_action_name_copied(served: Served, uid: str) -> None:
    """A8: action_type/action_name are kept beside the body (ext 1 is running: skipped)."""
    running = nailgun_task(uid, 1, end=None, name="deployment")
    http = {"master_node_uid": uid, "external_id": 2, "body": {
        "id": 2, "action_type": "http_request", "action_name": "", "end_timestamp": "",
        "additional_info": {"request_data": {}, "response_data": {}}}}
    answer = ok(post(served.client, R, {"action_logs": [running, http]}), R)
    assert [i["status"] for i in answer["action_logs"]] == ["skipped", "added"]
    (obj,) = stored(served.client, uid)["objs"]
    assert (obj["external_id"], obj["action_type"], obj["action_name"]) == (
        2, "http_request", "")


def test_secrets_sanitized(served: Served, uid: str) -> None:
    """Passwords and tokens in request/response data are replaced before storage."""
    log = {"master_node_uid": uid, "external_id": 1, "body": {
        "id": 1, "action_type": "http_request", "action_name": "login",
        "end_timestamp": "2", "additional_info": {
            "request_data": {"user": "admin", "password": "secret!"},
            "response_data": {"X-Auth-Token": "abc", "data": {"ssh_key": "AAAA"}}}}}
    ok(post(served.client, R, {"action_logs": [log]}), R)
    info = stored(served.client, uid)["objs"][0]["body"]["additional_info"]
    assert info["request_data"] == {"user": "admin", "password": "<sanitized>"}
    assert info["response_data"] == {"X-Auth-Token": "<sanitized>",
                                     "data": {"ssh_key": "<sanitized>"}}
