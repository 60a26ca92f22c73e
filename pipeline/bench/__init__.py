"""Benchmarks behind ``harstream bench`` and ``make bench``: they measure and print."""
