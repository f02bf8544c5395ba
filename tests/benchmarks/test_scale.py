"""Ten million actions with --audit (issue 20): peak memory under 1 GB and time within 12x of a
one-million-action run, both measured here, each in a fresh process (about five minutes)."""

from __future__ import annotations

import pytest

from simharness import bench

pytestmark = [pytest.mark.benchmark, pytest.mark.slow]


def test_ten_million_actions_with_audit_fit_in_a_gigabyte(capsys):
    small = bench.scale_run("28h")
    large = bench.scale_run("280h")
    with capsys.disabled():
        for r in (small, large):
            print(f"\n{r['actions']:,} actions with --audit: {r['cpu_s']:.0f} s, "
                  f"peak {r['peak_mb']:.0f} MB")
    assert small["actions"] > 900_000 and large["actions"] > 9_000_000
    assert large["peak_mb"] < 1024
    assert large["cpu_s"] <= 12 * small["cpu_s"]
