"""Benchmarks (`make bench`): not part of CI. Each prints a table and writes JSON to bench/results/."""
