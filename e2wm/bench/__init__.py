"""Benchmarks: contenders side by side in one process, reported as ratios plus one JSON line."""
