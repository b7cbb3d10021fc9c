"""OONI report ids: minting one for ``POST /report`` and the stateless checks on submit.

The server keeps no report state: everything a submission is checked against is
parsed out of the report id (reference A1). The format is
``{UTC YYYYMMDDTHHMMSSZ}_{test name without underscores}_{CC}_{ASN}_n{collector}_{rand}``
where ``rand`` is 12 random bytes in base64 with the altchars ``oo`` (16 characters).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

BACKEND_VERSION = "1.3.5"
SUPPORTED_FORMATS = ["yaml", "json"]


class Refusal(Exception):
    """A submission OONI refuses, with the exact status and JSON body it answers."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


def incorrect_format() -> Refusal:
    """OONI's answer to a malformed report id or body."""
    return Refusal(400, {"detail": "Incorrect format"})


@dataclass(frozen=True)
class OpenReport:
    """The normalised fields of a ``POST /report`` body."""

    probe_cc: str
    probe_asn: int
    test_name: str
    data_format_version: str
    format: str
    software_name: str
    software_version: str
    test_start_time: str
    test_version: str


_REQUIRED_STR = (
    "data_format_version",
    "format",
    "software_name",
    "software_version",
    "test_start_time",
    "test_version",
)


def normalise_asn(value: str) -> int:
    """``probe_asn`` as OONI reads it: ``AS<int>`` upper-cased, else 0."""
    asn = value.upper()
    if not 3 <= len(asn) <= 12 or not asn.startswith("AS"):
        return 0
    try:
        return int(asn[2:])
    except ValueError:
        return 0


def normalise_cc(value: str) -> str:
    """``probe_cc`` upper-cased without underscores; anything not 2 long is ZZ."""
    cc = value.upper().replace("_", "")
    return cc if len(cc) == 2 else "ZZ"


def parse_open(body: Any) -> OpenReport:
    """Validate an open-report body; ValueError names the first bad field."""
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    for name in _REQUIRED_STR:
        if not isinstance(body.get(name), str):
            raise ValueError(f"field required: {name} (a string)")
    for name, default in (("probe_asn", "AS0"), ("probe_cc", "ZZ"), ("test_name", "")):
        if not isinstance(body.get(name, default), str):
            raise ValueError(f"{name} must be a string")
    return OpenReport(
        probe_cc=normalise_cc(body.get("probe_cc", "ZZ")),
        probe_asn=normalise_asn(body.get("probe_asn", "AS0")),
        test_name=body.get("test_name", "").lower(),
        **{name: body[name] for name in _REQUIRED_STR},
    )


def mint(report: OpenReport, collector_id: str, now: datetime | None = None) -> str:
    """A fresh report id for ``report``."""
    ts = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    rand = base64.b64encode(os.urandom(12), altchars=b"oo").decode()
    tn = report.test_name.replace("_", "")
    return f"{ts}_{tn}_{report.probe_cc}_{report.probe_asn}_n{collector_id}_{rand}"


@dataclass(frozen=True)
class ReportId:
    """The parts of a report id the submit checks use."""

    report_id: str
    test_name: str  # without underscores
    probe_cc: str
    probe_asn: int
    asn_part: str  # as written in the id, for the consistency check

    @property
    def discarded(self) -> bool:
        """Check 4: ASN 0 or CC ZZ is answered 200 ``{}`` and not stored."""
        return self.probe_asn == 0 or self.probe_cc == "ZZ"


def parse(report_id: str) -> ReportId:
    """Checks 1-3 of a submission, in order; Refusal on the first that fails."""
    parts = report_id.split("_")
    if len(parts) != 6:
        raise incorrect_format()
    _ts, test_name, cc, asn, _collector, _rand = parts
    if len(cc) != 2 or not (test_name.isalnum() and 1 < len(test_name) < 30):
        raise incorrect_format()
    try:
        probe_asn = int(asn)
    except ValueError:
        raise incorrect_format() from None
    return ReportId(report_id, test_name, cc, probe_asn, asn)
