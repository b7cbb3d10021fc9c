"""Downlink."""
