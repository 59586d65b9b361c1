"""Benchmarks and tools run from the repository root as `python -m bench.<name>`; never part
of the test suite."""
