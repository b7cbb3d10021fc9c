"""Report ids, the submit checks in their order, zstd bodies and measurement_uid."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

import orjson
import pytest
import zstandard

from downlink.sources.ooni import reportid, submission
from downlink.sources.ooni.reportid import Refusal

OPEN = {
    "data_format_version": "0.2.0", "format": "json", "probe_asn": "AS65550",
    "probe_cc": "IE", "software_name": "ooniprobe", "software_version": "3.0",
    "test_name": "web_connectivity", "test_start_time": "2020-01-01 00:00:00",
    "test_version": "0.4.0",
}


def test_minted_report_id_format() -> None:
    when = datetime(2021, 2, 8, 16, 27, 55, tzinfo=UTC)
    rid = reportid.mint(reportid.parse_open(OPEN), "1", when)
    assert len(rid) == 61
    assert re.fullmatch(r"20210208T162755Z_webconnectivity_IE_65550_n1_[A-Za-z0-9o]{16}", rid)
    assert reportid.parse(rid).probe_asn == 65550


@pytest.mark.parametrize(
    ("field", "value", "cc", "asn"),
    [
        ("probe_asn", "as123", "IE", 123),
        ("probe_asn", "123", "IE", 0),
        ("probe_asn", "AS", "IE", 0),
        ("probe_asn", "AS1234567890123", "IE", 0),
        ("probe_asn", "ASxyz", "IE", 0),
        ("probe_cc", "i_e", "IE", 65550),
        ("probe_cc", "IRL", "ZZ", 65550),
    ],
)
def test_open_normalisation(field: str, value: str, cc: str, asn: int) -> None:
    report = reportid.parse_open({**OPEN, field: value})
    assert (report.probe_cc, report.probe_asn) == (cc, asn)


def test_open_defaults_and_required() -> None:
    body = {k: v for k, v in OPEN.items() if k not in ("probe_cc", "probe_asn", "test_name")}
    report = reportid.parse_open(body)
    assert (report.probe_cc, report.probe_asn, report.test_name) == ("ZZ", 0, "")
    with pytest.raises(ValueError, match="software_name"):
        reportid.parse_open({k: v for k, v in OPEN.items() if k != "software_name"})
    with pytest.raises(ValueError, match="object"):
        reportid.parse_open([1])


@pytest.mark.parametrize(
    "rid",
    [
        "a_b_c",
        "20210208T162755Z_web_connectivity_IE_1_n1_x",  # 7 parts
        "20210208T162755Z_ndt_IRL_1_n1_x",
        "20210208T162755Z_n_IE_1_n1_x",
        "20210208T162755Z_" + "a" * 30 + "_IE_1_n1_x",
        "20210208T162755Z_web-conn_IE_1_n1_x",
        "20210208T162755Z_ndt_IE_AS1_n1_x",
    ],
)
def test_incorrect_format(rid: str) -> None:
    with pytest.raises(Refusal) as exc:
        reportid.parse(rid)
    assert (exc.value.status, exc.value.body) == (400, {"detail": "Incorrect format"})


def test_discarded() -> None:
    assert reportid.parse("20210208T162755Z_ndt_IE_0_n1_x").discarded
    assert reportid.parse("20210208T162755Z_ndt_ZZ_5_n1_x").discarded
    assert not reportid.parse("20210208T162755Z_ndt_IE_5_n1_x").discarded


def test_zstd_roundtrip_and_bomb() -> None:
    data = b'{"format":"json","content":{}}'
    assert submission.decode(zstandard.compress(data), "zstd", 1000) == data
    bomb = zstandard.ZstdCompressor(level=19).compress(b"\0" * 50_000_000)
    assert len(bomb) < 10_000
    with pytest.raises(submission.TooLarge):
        submission.decode(bomb, "zstd", 1_000_000)


def test_bad_zstd_and_other_encodings() -> None:
    with pytest.raises(Refusal) as exc:
        submission.decode(b"not zstd", "zstd", 1000)
    assert exc.value.body == {"detail": "Incorrect format"}
    with pytest.raises(Refusal) as exc:
        submission.decode(b"x", "gzip", 1000)
    assert exc.value.status == 415
    assert submission.decode(b"x", None, 1000) == b"x"


@pytest.mark.parametrize("body", [b"nope", b"[]", b'{"format":"json"}', b'{"content":"str"}'])
def test_body_not_a_measurement(body: bytes) -> None:
    with pytest.raises(Refusal) as exc:
        submission.parse_body(body)
    assert exc.value.body == {"detail": "Incorrect format"}


RID = reportid.parse("20210208T162755Z_webconnectivity_IE_65550_n1_AAAAAAAAAAAAAAAA")


@pytest.mark.parametrize(
    ("cc", "asn", "tn"),
    [("IT", "AS65550", "web_connectivity"), ("IE", "AS1", "web_connectivity"),
     ("IE", "AS65550", "ndt")],
)
def test_inconsistent(cc: str, asn: str, tn: str) -> None:
    with pytest.raises(Refusal) as exc:
        submission.check_consistent(RID, submission.Metadata(cc, asn, tn))
    assert exc.value.body == {"detail": "Inconsistent measurement"}


def test_consistent_ignores_case_and_underscores() -> None:
    submission.check_consistent(RID, submission.Metadata("ie", "as65550", "web_connectivity"))


@pytest.mark.parametrize(
    ("cc", "asn", "tn", "errors"),
    [
        ("ie", "AS1", "ndt", ["bad_cc"]),
        ("IE", "AS1", "n", ["tn_len"]),
        ("IE", "AS1", "NDT", ["tn_case"]),
        ("IE", "1234", "ndt", ["asn_prefix"]),
        ("IE", "AS01", "ndt", ["asn_leading_zero"]),
        ("I", "AS", "x" * 31, ["bad_cc", "tn_len", "asn_len"]),
    ],
)
def test_bad_metadata(cc: str, asn: str, tn: str, errors: list[str]) -> None:
    with pytest.raises(Refusal) as exc:
        submission.check_metadata(submission.Metadata(cc, asn, tn))
    assert exc.value.body == {
        "detail": {"error": "bad_metadata", "message": "Errors: [" + ", ".join(errors) + "]"}
    }


@pytest.mark.parametrize(
    ("cc", "asn", "error"),
    [("IE", "AS0", "asn_0"), ("IE", "ASx1", "asn_invalid"), ("ZZ", "AS1", "cc_zz")],
)
def test_asn_and_cc_errors(cc: str, asn: str, error: str) -> None:
    with pytest.raises(Refusal) as exc:
        submission.check_metadata(submission.Metadata(cc, asn, "ndt"))
    assert exc.value.body["detail"]["error"] == error


def test_uid() -> None:
    stored = submission.stored_bytes({"format": "json", "content": {}}, "u")
    assert orjson.loads(stored)["is_verified"] == "u"
    when = datetime(2021, 2, 8, 22, 7, 10, 181572, tzinfo=UTC)
    uid = submission.mint_uid(when, "MA", "web_connectivity", stored)
    assert uid == "20210208220710.181572_MA_webconnectivity_" + hashlib.sha512(
        stored).hexdigest()[:16]
    assert submission.uid_time(uid) == when
    assert submission.uid_time("legacy") is None


@pytest.mark.parametrize("sent", [
    b'{"format":"json","content":{"probe_cc":"IT","n":1.50E2}}',
    b'{ "content" : {"a": [1, 2]},\n  "format": "json" }\n\t ',
    b'{"format":"json","content":{"s":"\\u00e9}"}}',
])
def test_stored_as_received_keeps_the_bytes(sent: bytes) -> None:
    body = orjson.loads(sent)
    stored = submission.stored_as_received(sent, body, "u")
    assert stored == sent.rstrip()[:-1] + b',"is_verified":"u"}'
    assert orjson.loads(stored) == {**orjson.loads(sent), "is_verified": "u"}


def test_stored_as_received_overrides_a_sent_is_verified() -> None:
    sent = b'{"format":"json","content":{},"is_verified":"t"}'
    stored = submission.stored_as_received(sent, orjson.loads(sent), "u")
    assert stored.count(b"is_verified") == 1
    assert orjson.loads(stored)["is_verified"] == "u"
