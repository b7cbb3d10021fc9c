"""Split py-spy samples of the ingest path into stages (placeholder, filled below)."""

from __future__ import annotations

STAGES: tuple[str, ...] = ()


def split_stages(raw: str) -> dict[str, float]:
    return {}
