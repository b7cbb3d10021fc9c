"""Per-record processors."""
