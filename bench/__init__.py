"""Benchmarks: the load driver (run.py and the modules it drives), the micro-suite (micro.py)."""
