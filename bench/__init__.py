"""Benchmarks of the order pipeline: `python -m bench e2e` and `python -m bench micro`.

Figures are measured and printed, never asserted: the targets printed next to them are goals.
Kept out of the services and infra/ on purpose; what the services do is counted from the
outside (bench.instrumented) so the code under measurement is the code that ships.
"""
