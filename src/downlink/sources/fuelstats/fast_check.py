"""A fast first check of action-log bodies: the request schema as msgspec types.

Validating a thousand action logs with the compiled JSON Schema (``schemas.py``) costs
about 18 us of CPU per item, most of a request's parsing; msgspec checks the same body
against typed structures in about 1 us per item. It is only a shortcut, one-sided: a
body it accepts is one the schema accepts (``tests/sources/fuelstats/test_fast_check.py``
checks this on generated bodies), and a body it refuses goes through the schema as
before, which decides (and names the problem). So the answers are the schema's.

The mapping of the draft-04 request schema of ``action_logs``:

* ``integer`` is a 64-bit integer here (orjson, which builds the data, reads larger
  ones as floats, which the schema refuses); ``number`` is an int or a float (never a
  bool, as in JSON Schema); nullable types are ``T | None``;
* a property the schema constrains but does not require is ``UNSET`` when missing;
  properties it does not mention are ignored, as the schema allows them;
* ``body``'s ``oneOf`` is a union tagged by ``action_type`` (``http_request`` or
  ``nailgun_task``): a body without it matches both branches, which ``oneOf`` refuses,
  and a tagged union refuses too;
* the top level allows no other property than ``action_logs`` (not required by the
  schema: the collector checks it).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
Number = Int64 | float
Obj = dict[str, Any]


class _HttpInfo(msgspec.Struct, gc=False):
    request_data: Obj | UnsetType = UNSET
    response_data: Obj | UnsetType = UNSET


class _TaskInfo(msgspec.Struct, gc=False):
    parent_task_id: Number | None | UnsetType = UNSET
    subtasks_ids: list[Any] | UnsetType = UNSET
    operation: str | UnsetType = UNSET
    nodes_from_resp: list[Any] | UnsetType = UNSET
    ended_with_status: str | UnsetType = UNSET
    message: str | None | UnsetType = UNSET
    output: Obj | None | UnsetType = UNSET


class _Http(msgspec.Struct, gc=False, tag_field="action_type", tag="http_request"):
    id: Number | UnsetType = UNSET
    actor_id: str | None | UnsetType = UNSET
    action_group: str | UnsetType = UNSET
    action_name: str | UnsetType = UNSET
    start_timestamp: str | UnsetType = UNSET
    end_timestamp: str | UnsetType = UNSET
    additional_info: _HttpInfo | UnsetType = UNSET
    is_sent: bool | UnsetType = UNSET
    cluster_id: Number | None | UnsetType = UNSET
    task_uuid: str | None | UnsetType = UNSET


class _Task(msgspec.Struct, gc=False, tag_field="action_type", tag="nailgun_task"):
    id: Number | UnsetType = UNSET
    actor_id: str | None | UnsetType = UNSET
    action_group: str | UnsetType = UNSET
    action_name: str | UnsetType = UNSET
    start_timestamp: str | UnsetType = UNSET
    end_timestamp: str | None | UnsetType = UNSET
    additional_info: _TaskInfo | UnsetType = UNSET
    is_sent: bool | UnsetType = UNSET
    cluster_id: Number | None | UnsetType = UNSET
    task_uuid: str | None | UnsetType = UNSET


class _Item(msgspec.Struct, gc=False):
    master_node_uid: str
    external_id: Int64
    body: _Http | _Task


class _Request(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    action_logs: list[_Item] | UnsetType = UNSET


_decoder = msgspec.json.Decoder(_Request)


def action_logs_valid(raw: bytes) -> bool:
    """True when ``raw`` is an ``action_logs`` request the schema surely accepts."""
    try:
        _decoder.decode(raw)
    except msgspec.MsgspecError:
        return False
    return True
