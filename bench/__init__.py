"""Benchmarks: ``make bench`` runs every ``bench_*.py`` and records the figures."""
