"""Benchmarks run only with `-m benchmark` (pyproject's addopts deselect them by default)."""

from __future__ import annotations

import pytest

from simharness import bench


@pytest.fixture(scope="session")
def checked_controls():
    """Each default control profile with its recorded requests and verified decisions."""
    _, checked = bench.decide_cases()
    return checked
