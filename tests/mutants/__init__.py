"""Curated mutants of lhsweep's safety checks, and the runner that proves the fast tests kill them.

Run it with `python -m tests.mutants` (or `make mutate`); see docs/mutation.md.
"""
