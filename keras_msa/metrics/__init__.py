"""Metrics exactly as the papers compute them (METRICS.md)."""
