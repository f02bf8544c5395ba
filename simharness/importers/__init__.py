"""Benchmark suites as scenarios (one module per benchmark; each imports its package lazily)."""
