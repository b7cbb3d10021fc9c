"""Named queries: one function per question the API and UI ask."""
