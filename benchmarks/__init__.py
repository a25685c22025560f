"""Benchmarks: ``python -m benchmarks NAME [--quick] [--json]``; results in docs/benchmarks.md."""
