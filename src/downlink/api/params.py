"""The API's parameters: the one parser of the API and the pages (``downlink.params``),
under the name the API's modules have always imported it by."""

from __future__ import annotations

from downlink.params import MAX_ID, RecordId, integer, is_plain_text, parse_moment, text

__all__ = ["MAX_ID", "RecordId", "integer", "is_plain_text", "parse_moment", "text"]
