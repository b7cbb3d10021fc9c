"""Helpers for tests and benchmarks: a throwaway PostgreSQL, a live server."""
