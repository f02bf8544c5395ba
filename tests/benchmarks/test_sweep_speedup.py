"""Speed-up of a 2-worker process pool over 1 worker on a sweep of 8 runs (target >= 1.8x).

Best of two rounds each: on a shared machine other load only ever slows a round down.
"""

from __future__ import annotations

import itertools
import os
import time

import pytest

import simharness

pytestmark = pytest.mark.benchmark

# 2 points x 2 controls x 2 replications = 8 runs of about a second each
ARGS = dict(grid={"agents.0.count": [40, 80]}, controls=["none", "per_action_policy"],
            overrides=["replications=2", "horizon=24h"])
ROUNDS = 2


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores")
def test_two_workers_over_one(benchmark, tmp_path):
    serial = []
    for i in range(ROUNDS):
        t0 = time.perf_counter()
        one = simharness.sweep("baseline", out=tmp_path / f"w1-{i}", workers=1, **ARGS)
        serial.append(time.perf_counter() - t0)
    counter = itertools.count()

    def two_workers():
        return simharness.sweep("baseline", out=tmp_path / f"w2-{next(counter)}", workers=2,
                                **ARGS)

    two = benchmark.pedantic(two_workers, rounds=ROUNDS, iterations=1)
    assert two.manifest["runs_computed"] == 8
    parallel = benchmark.stats.stats.min
    speedup = min(serial) / parallel
    benchmark.extra_info.update(runs=8, serial_s=round(min(serial), 3), speedup=round(speedup, 2))
    print(f"\n8 runs, best of {ROUNDS}: 1 worker {min(serial):.2f} s, 2 workers {parallel:.2f} s, "
          f"speed-up {speedup:.2f}x")
    assert (tmp_path / "w1-0" / "summary.csv").read_bytes() == \
        (tmp_path / "w2-0" / "summary.csv").read_bytes()
    assert one.summary.equals(two.summary)
    assert speedup >= 1.8  # the target (issue 20), on an idle two-core machine
