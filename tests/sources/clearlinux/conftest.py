"""Fixtures of the Clear Linux tests: a migrated store that is not running a writer thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from downlink.settings import Settings
from downlink.store.database import Store


@pytest.fixture
def db(settings: Settings) -> Iterator[Store]:
    """A migrated store used synchronously (rows go in with helpers.load)."""
    s = Store(settings)
    s.migrate()
    try:
        yield s
    finally:
        s.close()
