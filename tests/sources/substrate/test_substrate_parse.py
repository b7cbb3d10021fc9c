"""Parsing of node frames: both envelopes, timestamps, identity, rejections."""

from __future__ import annotations

import json
from typing import Any

import pytest

from downlink.sources.substrate.wire import (
    FlushRequest,
    MessageRejected,
    NodeMessage,
    identify,
    parse_frame,
    parse_ts,
    to_row,
)


def _parse(frame: dict[str, Any] | str | bytes) -> NodeMessage:
    data = frame if isinstance(frame, str | bytes) else json.dumps(frame)
    parsed = parse_frame(data)
    assert isinstance(parsed, NodeMessage)
    return parsed


def test_substrate_telemetry_parser_cases(parser_cases: list[dict[str, Any]]) -> None:
    for case in parser_cases:
        message = _parse(case["frame"])
        assert message.envelope == (2 if case["expected"] == "V2" else 1)
        assert message.msg in ("notify.finalized", "block.import")
    v2 = _parse(parser_cases[1]["frame"])
    assert v2.node == "1"
    assert v2.body["height"] == "209"
    assert json.loads(v2.body_text) == parser_cases[1]["frame"]["payload"]


def test_every_fixture_message_parses(
    v1_frames: list[dict[str, Any]],
    v1_live_frames: list[dict[str, Any]],
    v2_frames: list[dict[str, Any]],
) -> None:
    for frame in v1_frames + v1_live_frames:
        message = _parse(frame)
        assert (message.envelope, message.node, message.msg) == (1, "0", frame["msg"])
    for frame in v2_frames:
        message = _parse(json.dumps(frame).encode())
        assert (message.envelope, message.msg) == (2, frame["payload"]["msg"])


def test_timestamps_keep_nanosecond_input_and_offsets() -> None:
    assert parse_ts("2021-01-13T12:38:25.410794650+01:00") == pytest.approx(1610537905.410794)
    assert parse_ts("2021-01-13T11:38:25.410794650Z") == pytest.approx(1610537905.410794)
    for bad, reason in (
        (None, "missing_ts"),
        (17, "missing_ts"),
        ("yesterday", "bad_ts"),
        ("2021-01-13T12:38:25", "bad_ts"),
        ("2021-02-30T00:00:00Z", "bad_ts"),
    ):
        with pytest.raises(MessageRejected) as info:
            parse_ts(bad)
        assert info.value.reason == reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe", "invalid_utf8"),
        ("not json", "invalid_json"),
        ("[1, 2]", "not_object"),
        ('{"msg": "block.import"}', "missing_ts"),
        ('{"msg": "x", "ts": "2020-02-14 nope"}', "bad_ts"),
        ('{"id": true, "ts": "2021-01-13T12:38:25Z", "payload": {}}', "bad_id"),
    ],
)
def test_malformed_frames_are_rejected_with_a_reason(data: str | bytes, reason: str) -> None:
    with pytest.raises(MessageRejected) as info:
        parse_frame(data)
    assert info.value.reason == reason


def test_missing_or_odd_msg_is_stored_as_unknown() -> None:
    assert _parse({"ts": "2021-01-13T12:38:25Z", "x": 1}).msg == "unknown"
    assert _parse({"ts": "2021-01-13T12:38:25Z", "msg": 5}).msg == "unknown"
    assert _parse({"ts": "2021-01-13T12:38:25Z", "msg": "a\nb"}).msg == "unknown"


def test_flush_request_is_not_telemetry() -> None:
    assert parse_frame('{"downlink_flush": "t1"}') == FlushRequest("t1")


def test_identity_from_system_connected_v1(v1_frames: list[dict[str, Any]]) -> None:
    frame = next(f for f in v1_frames if f["msg"] == "system.connected")
    identity = identify(_parse(frame))
    assert identity is not None and identity.announced
    assert identity.peer_id == frame["network_id"]
    assert identity.name == frame["name"]
    assert identity.startup_time == int(frame["startup_time"])


def test_identity_from_v2_envelope(v2_frames: list[dict[str, Any]]) -> None:
    connected = next(f for f in v2_frames if f["payload"]["msg"] == "system.connected")
    identity = identify(_parse(connected))
    assert identity is not None
    assert identity.peer_id == connected["payload"]["network_id"]
    assert identity.genesis_hash == connected["payload"]["genesis_hash"]
    state = next(f for f in v2_frames if f["payload"]["msg"] == "system.network_state")
    from_state = identify(_parse(state))
    assert from_state is not None and not from_state.announced
    assert from_state.peer_id == state["payload"]["state"]["peerId"]
    interval = next(f for f in v2_frames if f["payload"]["msg"] == "system.interval")
    assert identify(_parse(interval)) is None


def test_identity_from_old_interval_network_state() -> None:
    frame = {
        "msg": "system.interval",
        "ts": "2019-08-01T00:00:00Z",
        "network_state": {"peerId": "QmOld"},
    }
    identity = identify(_parse(frame))
    assert identity is not None and identity.peer_id == "QmOld"


def test_row_keeps_both_clocks_and_connection_details(v2_frames: list[dict[str, Any]]) -> None:
    frame = next(f for f in v2_frames if f["payload"]["msg"] == "tracing.profiling")
    row = to_row(
        _parse(frame),
        connection="c" * 32,
        seq=7,
        peer_id="12D3Koo",
        ip="10.0.0.1:5",
        audit=True,
        received_at=2e9,
    )
    assert row["source"] == "substrate"
    assert row["classification"] == "substrate/tracing.profiling"
    assert row["machine_id"] == "12D3Koo"
    assert row["ts_reception"] == 2e9
    assert row["ts_capture"] == pytest.approx(parse_ts(frame["ts"]))
    assert row["attrs"] == {
        "conn": "c" * 32,
        "node": "1",
        "v": 2,
        "ts": frame["ts"],
        "audit": True,
        "ip": "10.0.0.1:5",
        "msg": "tracing.profiling",
        "since": 2e9,  # when the connection opened (none given: this record's time)
        "target": frame["payload"]["target"],
    }
    assert row["dedup_key"] == "s" + "c" * 32 + ":7"
    assert json.loads(row["payload"]) == frame["payload"]
