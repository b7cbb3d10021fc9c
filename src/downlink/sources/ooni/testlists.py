"""The citizenlab test lists: each URL's category, for ``category_code`` (reference A4).

``downlink ooni testlists load lists/*.csv`` reads the CSVs of
github.com/citizenlab/test-lists (``url,category_code,category_description,
date_added,source,notes``; the file name is the country, ``global.csv`` is ``ZZ``)
and replaces ``ooni_citizenlab``. The measurements API filters on a category through
``input = url``; the aggregation also groups by it, a URL counting in its country's
list or the global one (``cc`` = the probe's or ``ZZ``), as OONI's join does.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import Connection, insert

from downlink.sources.ooni.tables import citizenlab

CATEGORY = re.compile(r"^[A-Z]+$")


class TestListError(ValueError):
    """A file that is not a test list (the message names the file and line)."""


@dataclass(frozen=True)
class Entry:
    url: str
    cc: str
    domain: str
    category_code: str


def read_file(path: Path) -> list[Entry]:
    """The entries of one test-list CSV."""
    stem = path.stem.lower()
    cc = "ZZ" if stem == "global" else stem.upper()
    if not re.fullmatch(r"[A-Z]{2}", cc):
        raise TestListError(f"{path.name}: the file name must be a country code or global")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TestListError(f"{path.name}: cannot read ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"url", "category_code"} <= set(reader.fieldnames):
        raise TestListError(f"{path.name}: needs the columns url and category_code")
    out = []
    for n, row in enumerate(reader, start=2):
        url, code = (row.get("url") or "").strip(), (row.get("category_code") or "").strip()
        domain = urlsplit(url).hostname or ""
        if not domain or not CATEGORY.match(code):
            raise TestListError(f"{path.name} line {n}: needs a URL and a category code")
        out.append(Entry(url, cc, domain, code))
    return out


def replace(conn: Connection, entries: Sequence[Entry]) -> int:
    """Replace the loaded lists (the last entry of a repeated url and country wins)."""
    unique = {(e.url, e.cc): e for e in entries}
    conn.execute(citizenlab.delete())
    values = [vars(e) for e in unique.values()]
    for start in range(0, len(values), 1000):
        conn.execute(insert(citizenlab), values[start : start + 1000])
    return len(values)
