"""Authority probing on a million-action run (issue 14): a whole run (workload, digest,
simulation, metrics) with probing against the same run without it, measured in this run."""

from __future__ import annotations

import pytest

from simharness import bench

pytestmark = pytest.mark.benchmark


def test_probing_a_million_action_run_costs_at_most_a_tenth_more(capsys):
    r = bench.probe_overhead(horizon="28h", repeats=3)
    pairs = ", ".join(f"{100 * x:+.1f} %" for x in r["pairs"])
    with capsys.disabled():
        print(f"\n{r['actions']:,} actions: {r['without_s']:.1f} s without probing, "
              f"{r['with_probe_s']:.1f} s with (best of 3 each); pairs {pairs}, "
              f"median {100 * r['overhead']:+.1f} %")
    assert r["actions"] > 900_000
    assert r["overhead"] <= 0.10, r
