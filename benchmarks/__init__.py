"""Benchmark scripts (run by path, e.g. ``python benchmarks/bench_gpu.py``); a package so that
``benchmarks.gpu`` resolves to this directory whatever else is installed."""
