"""Blocking fingerprints: loading (JSON or the blocking-fingerprints CSVs) and matching.

A fingerprint says where a known block page or DNS answer shows up
(``location_found``: ``dns``, ``body`` or ``header.<name>``), how its ``pattern`` is
compared (``pattern_type``: full, prefix, contains, regexp), its ``scope`` (inst, isp,
nat, prod, vbw, fp, ...) and the ``expected_countries`` it is known in.

OONI's fastpath applies every body pattern as a substring and only full/prefix header
patterns; Downlink applies each pattern type as named, in every location (documented in
docs/ooni.md).
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ahocorasick
import orjson

PATTERN_TYPES = ("full", "prefix", "contains", "regexp")
_FIELDS = ("name", "location_found", "pattern_type", "pattern")


class FingerprintError(ValueError):
    """A fingerprint file or entry that cannot be used."""


@dataclass(frozen=True)
class Fingerprint:
    """One fingerprint, with its expected countries parsed."""

    name: str
    scope: str
    location_found: str
    pattern_type: str
    pattern: str
    confidence_no_fp: int = 5
    expected_countries: tuple[str, ...] = ()
    other_names: str = ""
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def brief(self) -> dict[str, Any]:
        """The fields kept in ``scores.fingerprints``."""
        return {
            "name": self.name,
            "scope": self.scope,
            "location_found": self.location_found,
            "confidence_no_fp": self.confidence_no_fp,
            "expected_countries": list(self.expected_countries),
        }

    def matches(self, value: str) -> bool:
        """Compare a body, header value or DNS answer with the pattern."""
        if self.pattern_type == "full":
            return value == self.pattern
        if self.pattern_type == "prefix":
            return value.startswith(self.pattern)
        if self.pattern_type == "contains":
            return self.pattern in value
        assert self.regex is not None
        return self.regex.search(value) is not None


def expected_countries(value: Any) -> tuple[str, ...]:
    """``"IT,de"`` (or a list) as sorted upper-case CCs, without ZZ and blanks."""
    items = value.split(",") if isinstance(value, str) else list(value or ())
    ccs = {str(cc).strip().upper() for cc in items}
    ccs.discard("")
    ccs.discard("ZZ")
    return tuple(sorted(ccs))


def parse(entry: Mapping[str, Any], where: str) -> Fingerprint:
    """Build a Fingerprint from a JSON/CSV entry; FingerprintError names what is wrong.

    ``scope`` may be empty: the repository's CSVs leave it blank for some product
    fingerprints (``ooni.ru_83``, ``ooni.zz_4``, ...); such a match is recorded, and
    confirms blocking only in its expected countries (locality general, as OONI's
    fastpath does for any scope it does not map).
    """
    for name in _FIELDS:
        if not isinstance(entry.get(name), str) or not entry[name]:
            raise FingerprintError(f"{where}: field {name!r} is missing or empty")
    scope = entry.get("scope")
    if scope is None:
        scope = ""
    if not isinstance(scope, str):
        raise FingerprintError(f"{where}: field 'scope' is not text")
    pattern_type = entry["pattern_type"]
    if pattern_type not in PATTERN_TYPES:
        raise FingerprintError(f"{where}: unknown pattern_type {pattern_type!r}")
    location = entry["location_found"]
    if location not in ("dns", "body") and not location.startswith("header."):
        raise FingerprintError(f"{where}: unknown location_found {location!r}")
    try:
        raw = entry.get("confidence_no_fp")
        # Blank means the default, 5; 0 is a value (``0 or 5`` made it 5 from JSON).
        confidence = 5 if raw is None or raw == "" else int(raw)
    except (TypeError, ValueError):
        raise FingerprintError(f"{where}: confidence_no_fp is not an integer") from None
    regex = None
    if pattern_type == "regexp":
        try:
            regex = re.compile(entry["pattern"])
        except re.error as exc:
            raise FingerprintError(f"{where}: bad regexp: {exc}") from None
    return Fingerprint(
        name=entry["name"],
        scope=scope,
        location_found=location.lower(),
        pattern_type=pattern_type,
        pattern=entry["pattern"],
        confidence_no_fp=confidence,
        expected_countries=expected_countries(entry.get("expected_countries", "")),
        other_names=str(entry.get("other_names") or ""),
        regex=regex,
    )


def parse_all(entries: Iterable[Mapping[str, Any]], source: str) -> list[Fingerprint]:
    """Parse many entries, naming the source file and entry number on errors."""
    return [parse(e, f"{source} entry {i + 1}") for i, e in enumerate(entries)]


def read_file(path: Path) -> list[Fingerprint]:
    """Read a JSON list or a CSV file (the blocking-fingerprints repository's columns)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FingerprintError(f"{path}: {exc.strerror}") from None
    return read_bytes(raw, path.name)


def read_bytes(raw: bytes, name: str) -> list[Fingerprint]:
    """Parse fingerprints from the bytes of a ``.json`` or ``.csv`` file."""
    if name.lower().endswith(".json"):
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise FingerprintError(f"{name}: not JSON: {exc}") from None
        if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
            raise FingerprintError(f"{name}: expected a JSON list of objects")
        return parse_all(data, name)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FingerprintError(f"{name}: not UTF-8 text") from None
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise FingerprintError(f"{name}: no rows")
    if "location_found" not in rows[0]:
        # The DNS CSV of the repository has no location_found column.
        for row in rows:
            row["location_found"] = "dns"
    return parse_all(rows, name)


def _text(value: Any) -> str | None:
    """A body or header value as text: plain strings, or base64 ``{"format","data"}``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("format") == "base64":
        data = value.get("data", "")
        if not isinstance(data, str):
            return None
        try:
            return base64.b64decode(data).decode("utf-8", "surrogateescape")
        except (binascii.Error, ValueError):
            return None
    return None


class Fingerprints:
    """A loaded set of fingerprints, indexed for matching."""

    def __init__(self, items: Sequence[Fingerprint]) -> None:
        self.items = list(items)
        self.dns: dict[str, list[Fingerprint]] = {}
        self.dns_other: list[Fingerprint] = []
        self.body: list[Fingerprint] = []
        self.headers: dict[str, list[tuple[int, Fingerprint]]] = {}
        self._body_other: list[int] = []
        self.headers_order: list[Fingerprint] = []
        # Body "contains" patterns (three quarters of all) are found in one pass with
        # an Aho-Corasick automaton instead of one substring search each.
        self._contains = ahocorasick.Automaton()
        for fp in self.items:
            if fp.location_found == "dns":
                if fp.pattern_type == "full":
                    self.dns.setdefault(fp.pattern, []).append(fp)
                else:
                    self.dns_other.append(fp)
            elif fp.location_found == "body":
                if fp.pattern_type == "contains":
                    found = self._contains.get(fp.pattern, ())
                    self._contains.add_word(fp.pattern, (*found, len(self.body)))
                else:
                    self._body_other.append(len(self.body))
                self.body.append(fp)
            else:
                name = fp.location_found[len("header."):]
                self.headers.setdefault(name, []).append((len(self.headers_order), fp))
                self.headers_order.append(fp)
        self._has_contains = len(self._contains) > 0
        if self._has_contains:
            self._contains.make_automaton()

    def __len__(self) -> int:
        return len(self.items)

    def match_dns(self, answer: Any) -> list[Fingerprint]:
        """Fingerprints matching one DNS answer (its ipv4, else hostname, else ipv6)."""
        if not isinstance(answer, dict):
            return []
        for key in ("ipv4", "hostname", "ipv6"):
            if key in answer:
                addr = answer[key]
                break
        else:
            return []
        if not isinstance(addr, str):
            return []
        found = list(self.dns.get(addr, ()))
        found.extend(fp for fp in self.dns_other if fp.matches(addr))
        return found

    def match_body(self, body: Any) -> list[Fingerprint]:
        """Fingerprints matching an HTTP response body (text or base64)."""
        text = _text(body)
        if text is None:
            return []
        hits: set[int] = set()
        if self._has_contains:
            for _end, indexes in self._contains.iter(text):
                hits.update(indexes)
        hits.update(i for i in self._body_other if self.body[i].matches(text))
        return [self.body[i] for i in sorted(hits)]

    def match_headers(self, headers: Any) -> list[Fingerprint]:
        """Fingerprints matching HTTP response headers (names compared lower-cased)."""
        if not isinstance(headers, dict) or not headers:
            return []
        found: list[tuple[int, Fingerprint]] = []
        for name, value in headers.items():
            group = self.headers.get(str(name).lower())
            if group is None:
                continue
            text = _text(value)
            if text is not None:
                found.extend((i, fp) for i, fp in group if fp.matches(text))
        found.sort(key=lambda item: item[0])
        return [fp for _i, fp in found]


def load_default() -> Fingerprints:
    """The fingerprints shipped with Downlink (OONI's fastpath test data)."""
    here = Path(__file__).with_name("data")
    items = read_file(here / "fingerprints_dns.json") + read_file(here / "fingerprints_http.json")
    return Fingerprints(items)
