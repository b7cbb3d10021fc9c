"""Helpers of the fuel-stats black-box tests: posting, response checks, rules files."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from downlink.sources.fuelstats import schemas

SCHEMA_OF = {
    "ping": "ping",
    "installation_structure": "installation_structure",
    "action_logs": "action_logs",
    "oswl_stats": "oswl",
}


def checked(resp: httpx.Response, resource: str) -> dict[str, Any]:
    """The response body, validated against the resource's response schema."""
    body: dict[str, Any] = resp.json()
    schemas.response_validator(SCHEMA_OF[resource]).validate(body)
    assert isinstance(body.get("exec_time", 0.0), float | int)
    return body


def post(client: httpx.Client, resource: str, body: Any) -> httpx.Response:
    """POST ``body`` as JSON to ``/api/v1/<resource>/``."""
    return client.post(f"/api/v1/{resource}/", json=body)


def ok(resp: httpx.Response, resource: str, status: int = 200) -> dict[str, Any]:
    """Assert an ok answer with ``status``; return its (schema-valid) body."""
    assert resp.status_code == status, resp.text
    body = checked(resp, resource)
    assert body["status"] == "ok"
    return body


def err(resp: httpx.Response, status: int) -> dict[str, Any]:
    """Assert the error envelope with ``status``."""
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert body["status"] == "error"
    assert isinstance(body["message"], str) and body["message"]
    assert set(body) <= {"status", "message", "exec_time"}
    return body


def statuses(body: dict[str, Any], key: str) -> dict[str, int]:
    """Count the per-item statuses of a batch answer."""
    found: dict[str, int] = {}
    for item in body[key]:
        found[item["status"]] = found.get(item["status"], 0) + 1
    return found


def write_rules(path: Path, rules: Any) -> None:
    """Replace the rules file (the server re-reads it when its mtime or size changes)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(json.dumps(rules))
    while path.stat().st_mtime_ns == before:  # coarse clocks: make the change visible
        time.sleep(0.01)
        path.write_text(json.dumps(rules))


def minimal(uid: str, **extra: Any) -> dict[str, Any]:
    """The minimal valid installation structure of ``uid``."""
    return {
        "installation_structure": {
            "master_node_uid": uid,
            "allocated_nodes_num": 0,
            "unallocated_nodes_num": 0,
            "clusters_num": 0,
            "clusters": [],
            **extra,
        }
    }


def info(client: httpx.Client, uid: str) -> dict[str, Any]:
    """The stored installation of ``uid`` (through the JSON API)."""
    resp = client.get(f"/api/v1/json/installation_info/{uid}")
    assert resp.status_code == 200, resp.text
    found: dict[str, Any] = resp.json()
    return found


def nailgun_task(uid: str, ext: int, *, end: str | None = "2", start: str = "1",
                 name: str = "deployment", status: str = "ready",
                 parent: int | None = None) -> dict[str, Any]:
    """One nailgun_task action log."""
    return {
        "master_node_uid": uid,
        "external_id": ext,
        "body": {
            "id": ext,
            "actor_id": "",
            "action_group": "cluster_changes",
            "action_name": name,
            "action_type": "nailgun_task",
            "start_timestamp": start,
            "end_timestamp": end,
            "additional_info": {
                "parent_task_id": parent,
                "subtasks_ids": [],
                "operation": name,
                "nodes_from_resp": [],
                "ended_with_status": status,
            },
            "is_sent": False,
            "cluster_id": 5,
            "task_uuid": None,
        },
    }


def oswl(uid: str, ext: int, *, resource_type: str = "vm", checksum: str = "c",
         cluster_id: int | None = None, created: str = "2016-01-01",
         data: dict[str, Any] | None = None, version_info: Any = None) -> dict[str, Any]:
    """One OSWL snapshot."""
    item: dict[str, Any] = {
        "master_node_uid": uid,
        "id": ext,
        "cluster_id": ext if cluster_id is None else cluster_id,
        "resource_type": resource_type,
        "resource_checksum": checksum,
        "created_date": created,
        "updated_time": "12:34:56.789012",
        "resource_data": data or {"added": [], "current": [], "removed": [], "modified": []},
    }
    if version_info is not None:
        item["version_info"] = version_info
    return item
