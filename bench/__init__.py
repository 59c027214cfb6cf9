"""Benchmarks of the course library (see backbone.py)."""
