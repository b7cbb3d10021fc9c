"""Shared OONI test data: the fixture measurements and the default fingerprints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from downlink.sources.ooni.fingerprints import Fingerprints, load_default

MEASUREMENTS = (
    Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "ooni" / "measurements"
)


def fixture_measurements() -> dict[str, dict[str, Any]]:
    """Every fixture measurement by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted(MEASUREMENTS.glob("*.json"))}


@pytest.fixture(scope="session")
def fps() -> Fingerprints:
    """The fingerprints Downlink ships (OONI's fastpath test data)."""
    return load_default()
