"""Benchmarks: speed and memory of the pipeline's steps, outside the library (python -m benchmarks.<name>)."""
