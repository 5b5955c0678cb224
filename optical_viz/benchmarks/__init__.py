"""Benchmarks behind `optical-viz bench` (separate from the tests; they assert nothing)."""
