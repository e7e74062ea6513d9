"""Helpers of the LDSeg benchmarks (``benchmarks/run_benchmarks.py``)."""
