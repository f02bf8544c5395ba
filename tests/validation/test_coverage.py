"""Do the intervals cover? (issue 14) 200 replications of per_action_policy on the baseline;
in 20 batches of 10, the 95 % interval of false_deny_rate, misuse_caught_rate and exposure
should cover the 200-replication mean at least 18 times in 20. Slow: run with -m slow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simharness import metrics, stats
from simharness.controls.base import World, make
from simharness.engine import simulate
from simharness.loader import load_scenario
from simharness.workload import build_workload

REPLICATIONS, BATCH = 200, 10
METRICS = ("false_deny_rate", "misuse_caught_rate", "exposure")


def per_replication(control: str = "per_action_policy") -> pd.DataFrame:
    spec = load_scenario("baseline")
    e = spec.control(control)
    rows = []
    for rep in range(REPLICATIONS):
        log = simulate(build_workload(spec, rep), make(e.name, e.model, e.params, World(spec)),
                       keep_plans=False)
        m = metrics.compute(log)
        rows.append({"control": control, "replication": rep, **m})
    return pd.DataFrame(rows)


def coverage(summary: pd.DataFrame) -> dict[str, int]:
    """How many of the batches' intervals cover the mean over all replications."""
    truth = stats.aggregate(summary, ["control"]).iloc[0]
    hits = dict.fromkeys(METRICS, 0)
    for b in range(REPLICATIONS // BATCH):
        batch = summary[summary.replication // BATCH == b]
        agg = stats.aggregate(batch, ["control"]).iloc[0]
        for m in METRICS:
            hits[m] += bool(agg[f"{m}_ci_low"] <= truth[f"{m}_mean"] <= agg[f"{m}_ci_high"])
    return hits


@pytest.mark.slow
def test_intervals_cover_the_mean_of_200_replications():
    summary = per_replication()
    hits = coverage(summary)
    print("coverage in 20 batches:", hits)
    assert all(np.isfinite(summary[m]).all() for m in METRICS)
    assert all(h >= 18 for h in hits.values()), hits
