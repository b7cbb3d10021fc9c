"""Field rules of the Clear Linux record, checked in the original order with its messages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from downlink.sources.clearlinux.wire import (
    RecordRejected,
    fields_from_headers,
    fields_from_json,
    validate,
)
from tests.wire import TID, v2_headers


def check(overrides: dict[str, str | None], payload: bytes = b"hello\n") -> dict[str, object]:
    fields = fields_from_headers(v2_headers(overrides).items())
    return validate(fields, payload, allowed_tids=[TID], received_at=1_700_000_000.5)


def rejected(overrides: dict[str, str | None], payload: bytes = b"x") -> str:
    with pytest.raises(RecordRejected) as info:
        check(overrides, payload)
    return info.value.message


def test_valid_record_maps_every_field() -> None:
    row = check({"build": '"31000"', "system_name": '"clear-linux-os"'})
    assert row["build"] == "31000"
    assert row["system_name"] == "clear-linux-os"
    assert row["record_version"] == 4 and row["severity"] == 1
    assert row["host_type"] == "Dell Inc.|XPS 13|1.0"
    assert row["payload"] == "hello\n"
    assert row["ts_reception"] == 1_700_000_000.5
    assert isinstance(row["dedup_key"], str) and len(row["dedup_key"]) == 64


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"X-Telemetry-TID": "wrong"}, "Telemetry ID mismatch"),
        ({"X-Telemetry-TID": None}, "Telemetry ID mismatch"),
        ({"record_format_version": "5"}, "Record-Format-Version is invalid"),
        ({"record_format_version": "four"}, "Record-Format-Version is invalid"),
        ({"record_format_version": "٤"}, "Record-Format-Version is invalid"),
        ({"event_id": None}, "Record-Format-Version headers are invalid, Event-Id missing"),
        ({"arch": None}, "Record-Format-Version headers are invalid, Arch missing"),
        ({"severity": "0"}, "severity value is out of range"),
        ({"severity": "5"}, "severity value is out of range"),
        ({"severity": "-1"}, "severity value is out of range"),
        ({"classification": "org.clearlinux/hello"}, "Classification value is invalid"),
        ({"classification": "a/b/c/d"}, "Classification value is invalid"),
        ({"machine_id": "x" * 33}, "Machine id value is invalid"),
        ({"creation_timestamp": "-5"}, "timestamp is invalid"),
        ({"creation_timestamp": "1.5"}, "timestamp is invalid"),
        ({"creation_timestamp": "9" * 40}, "timestamp is invalid"),
        ({"arch": "X86_64"}, "architecture is invalid"),
        ({"arch": "riscv64"}, "architecture is invalid"),
        ({"host_type": "h" * 250}, "host type is invalid"),
        ({"kernel_version": "3.16"}, "kernel version is invalid"),
        ({"kernel_version": "a.b.c"}, "kernel version is invalid"),
        ({"board_name": "b" * 200}, "board name is invalid"),
        ({"cpu_model": "caf\u00e9"}, "cpu model is invalid"),
        ({"bios_version": "\x01"}, "BIOS version is invalid"),
        ({"event_id": "A" * 32}, "Event id is invalid"),
        ({"event_id": "abc"}, "Event id is invalid"),
        ({"build": "31000a"}, "Clear Linux OS build version has invalid characters"),
        ({"build": "x y", "system_name": "debian"}, "Build version has invalid characters"),
        ({"build": '""', "system_name": "debian"}, "Build version has invalid characters"),
        (
            {"payload_format_version": "one"},
            "Error parsing payload_format_version, invalid literal for int() with base 10: 'one'",
        ),
        (
            {"payload_format_version": "2147483647"},
            "Payload format version outside of range supported",
        ),
        (
            {"payload_format_version": "-99999999999"},
            "Payload format version outside of range supported",
        ),
    ],
)
def test_rule_messages(overrides: dict[str, str | None], message: str) -> None:
    assert rejected(overrides) == message


def test_first_failure_wins_in_reference_order() -> None:
    # Severity is checked before classification, classification before arch.
    assert rejected({"severity": "9", "classification": "bad", "arch": "bad"}) == (
        "severity value is out of range"
    )
    assert rejected({"classification": "bad", "arch": "bad"}) == "Classification value is invalid"


def test_accepted_edge_values() -> None:
    row = check(
        {
            "classification": "//",
            "machine_id": "",
            "creation_timestamp": "0",
            "kernel_version": "6.18.44-fc-v657",
            "severity": "01",
            "payload_format_version": "-3",
            "cpu_model": "Intel(R)",
        }
    )
    assert row["classification"] == "//" and row["machine_id"] == "" and row["severity"] == 1
    assert row["payload_version"] == -3


def test_older_record_versions_store_na() -> None:
    row = check({"record_format_version": "2", "event_id": None, "board_name": None})
    assert row["board_name"] == row["cpu_model"] == row["bios_version"] == "N/A"
    assert row["event_id"] == "N/A" and row["dedup_key"] is None
    row3 = check({"record_format_version": "3", "event_id": None})
    assert row3["board_name"] == "0X1234|Dell Inc." and row3["event_id"] == "N/A"


def test_rfv1_without_system_name_is_a_400_not_a_crash() -> None:
    msg = rejected({"record_format_version": "1", "system_name": None})
    assert msg == "Record-Format-Version headers are invalid, System-Name missing"


def test_leading_zero_rfv_is_checked_like_its_number() -> None:
    assert rejected({"record_format_version": "04", "event_id": None}).endswith("Event-Id missing")


def test_header_names_match_case_insensitively_with_dash_or_underscore() -> None:
    headers = {k.replace("_", "-").upper(): v for k, v in v2_headers().items()}
    fields = fields_from_headers(headers.items())
    assert validate(fields, b"", allowed_tids=[TID], received_at=0.0)["severity"] == 1


def test_payload_decoding() -> None:
    assert check({}, b"caf\xc3\xa9")["payload"] == "café"
    assert check({}, b"caf\xe9 \xff")["payload"] == "café ÿ"
    assert check({}, b"")["payload"] == ""
    with pytest.raises(RecordRejected, match="NUL"):
        check({}, b"a\x00b")


def test_any_tid_setting_accepts_a_missing_tid() -> None:
    fields = fields_from_headers(v2_headers({"X-Telemetry-TID": None}).items())
    assert validate(fields, b"", any_tid=True, received_at=0.0)["tid"] == ""


def test_json_record_fields() -> None:
    body = b'{"record_format_version":"4","severity":1,"payload":"hi\\n","extra":"x"}'
    fields, payload = fields_from_json(body)
    assert fields == {"record_format_version": "4", "severity": "1"}
    assert payload == b"hi\n"


@pytest.mark.parametrize(
    "body", [b"not json", b"[1,2]", b'{"severity": [1]}', b'{"payload": 5}', b'{"severity":true}']
)
def test_json_record_shape_errors(body: bytes) -> None:
    with pytest.raises(RecordRejected):
        fields_from_json(body)


@given(
    st.dictionaries(st.sampled_from(list(v2_headers())), st.text(max_size=40)),
    st.binary(max_size=200),
)
def test_validate_never_raises_anything_but_rejection(
    overrides: dict[str, str], payload: bytes
) -> None:
    try:
        check(dict(overrides), payload)
    except RecordRejected:
        pass


@pytest.mark.parametrize(
    "body",
    [
        b'{"record_format_version":"4","severity":"1","payload":"hi"}',
        b'{"record_format_version":4,"severity":"1","payload":"hi"}',  # a number
        b'{"severity":"1","extra":{"nested":[1,2]},"payload":"x"}',  # nested, unknown key
        b'{"severity":"1","payload":"\\u00e9\\ud83d\\ude00"}',  # escapes
        b'{"severity":"1","severity":"2","payload":""}',  # the last of a repeated key
    ],
)
def test_flat_records_decode_as_the_general_path_does(body: bytes) -> None:
    # The msgspec fast path (flat objects of strings) and the shallow decoder agree.
    from downlink.ingest.shallow_json import loads_shallow
    from downlink.sources.clearlinux.wire import fields_from_object

    assert fields_from_json(body) == fields_from_object(loads_shallow(body))


@pytest.mark.parametrize("body", [b'{"payload":"\\ud800"}', b'{"payload":"x"', b'{"a":"\x00'])
def test_bad_json_records_keep_their_messages(body: bytes) -> None:
    with pytest.raises(RecordRejected, match="Request body is not valid JSON"):
        fields_from_json(body)


def test_head_is_read_in_one_pass() -> None:
    from downlink.sources.clearlinux.wire import head_from_raw_headers

    raw = [
        (b"severity", b"1"),
        (b"content-type", b"application/json"),
        (b"content_type", b"text/plain"),  # a header named so is neither a field nor this
        (b"content-length", b"12"),
        (b"severity", b"2"),
        (b"x-telemetry-tid", TID.encode()),
    ]
    fields, ctype, length, watched = head_from_raw_headers(raw, b"x-secret")
    assert fields == {"severity": "1", "x_telemetry_tid": TID}
    assert (ctype, length, watched) == ("application/json", "12", False)
    assert head_from_raw_headers([*raw, (b"x-secret", b"s")], b"x-secret")[3] is True
    # A field's header is never taken for the watched one, nor the watched for a field.
    assert head_from_raw_headers(raw, b"severity")[3] is False
    assert head_from_raw_headers([(b"x-secret", b"s")])[0:3] == ({}, None, None)
