"""The mutation-testing script's sampling and scoring (.ci/mutation.py)."""

from __future__ import annotations

import importlib.util
import math
from collections import Counter
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / ".ci" / "mutation.py"
_spec = importlib.util.spec_from_file_location("ci_mutation", _PATH)
mutation = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mutation)  # type: ignore[union-attr]

NAMES = [f"pkg.mod.x_f{i // 10}__mutmut_{i % 10 + 1}" for i in range(400)]


def test_a_draw_is_a_seeded_subset_of_the_asked_share():
    a = mutation.draw(NAMES, 0.1, seed=1)
    assert len(a) == 40 and set(a) <= set(NAMES) and a == sorted(set(a))
    assert a == mutation.draw(list(reversed(NAMES)), 0.1, seed=1)  # input order does not matter
    assert a != mutation.draw(NAMES, 0.1, seed=2)
    assert len(mutation.draw(NAMES[:3], 0.1, seed=1)) == 1  # at least one


def test_every_mutant_is_equally_likely_to_be_drawn():
    """Over 500 seeds each of 400 names is drawn about 500 x 0.1 = 50 times (binomial, 5 sd)."""
    counts = Counter(n for seed in range(500) for n in mutation.draw(NAMES, 0.1, seed))
    sd = math.sqrt(500 * 0.1 * 0.9)
    assert all(abs(counts[n] - 50) < 5 * sd for n in NAMES)


@pytest.mark.parametrize("k, n", [(90, 100), (1, 20), (19, 20), (0, 5), (5, 5)])
def test_the_score_interval_is_wilsons(k, n):
    """Against the textbook formula (Wilson 1927) with z = 1.96, clipped to [0, 1]."""
    z = 1.959964
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo, hi = mutation.wilson(k, n)
    assert lo == pytest.approx(max(0.0, centre - half), abs=1e-6)
    assert hi == pytest.approx(min(1.0, centre + half), abs=1e-6)
    assert mutation.wilson(0, 0) == (0.0, 1.0)


def test_the_score_leaves_out_judged_equivalents_only():
    codes = {"a": 1, "b": 0, "c": 0, "d": 33, "e": 3}
    c = mutation.classify(codes, {"b": "a cache"})
    assert (c["killed"], c["survived"], c["equivalent"], c["no tests"]) == (2, 1, 1, 1)
    assert mutation.score(c) == 2 / 4  # a mutant no test reaches counts against the score
