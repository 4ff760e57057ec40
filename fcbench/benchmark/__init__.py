"""Timing harness, statistics and the machine's measured peak."""
