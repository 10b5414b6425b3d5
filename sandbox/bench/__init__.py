"""Benchmarks on the running stack: repeatable measurements, printed as JSON, compared side by side in one run."""
