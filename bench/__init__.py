"""Benchmarks: load (run.py), micro-suite (micro.py), report (report.py)."""
