"""lhsweep benchmarks: `python -m bench` measures sweep cost, start-up, idle footprint and storms."""
