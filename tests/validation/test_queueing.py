"""Queueing validation: the PDP as an M/M/c queue against Erlang-C (issue 10).

Arrivals: many agents, each with a low rate of single-step tasks (think 0, step 0), so the
superposition into the PDP is Poisson (an agent runs its tasks in order, but at 5,000 agents the
chance that one agent's next task arrives while its previous decision is still pending is
~rate x sojourn ~ 4e-4). The PDP has c servers, exponential service, rtt 0 and no timeout; the
policy allows everything. Per replication: mean decision latency after the warm-up, Little's
law L = lambda W on the action log, and PDP utilisation from the station's busy time.

CI profile: 10 replications x 20k requests (two worker processes); nightly (`-m slow`): the 30
replications the issue asks for.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.validation._mmc import allow_all_policy, erlang_c, mmc_spec, run_rep

SERVERS, MEAN_SERVICE, RHO = 2, 0.1, 0.7
REQUESTS, WARMUP_REQUESTS = 20_000, 1_000
# Student t 0.995 quantiles (two-sided 99 %), so the test needs no scipy.
T995 = {9: 3.249835541592, 29: 2.756385903670}


def _replications(tmp: Path, reps: int) -> list[dict[str, float]]:
    spec = mmc_spec(allow_all_policy(tmp), servers=SERVERS, mean_service=MEAN_SERVICE, rho=RHO,
                    requests=REQUESTS, warmup_requests=WARMUP_REQUESTS)
    workers = max(1, min(reps, os.cpu_count() or 1))
    if workers == 1:
        return [run_rep(spec, r) for r in range(reps)]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(run_rep, [spec] * reps, range(reps)))


def _ci99(values: np.ndarray) -> tuple[float, float, float]:
    n = len(values)
    m = float(values.mean())
    half = T995[n - 1] * float(values.std(ddof=1)) / math.sqrt(n)
    return m, m - half, m + half


def check_mmc(tmp: Path, reps: int) -> dict[str, float]:
    lam = RHO * SERVERS / MEAN_SERVICE
    _, w_theory = erlang_c(SERVERS, lam, 1 / MEAN_SERVICE)
    rows = _replications(tmp, reps)
    for r in rows:  # ~20k measured requests each
        assert abs(r["n"] - REQUESTS) < 0.05 * REQUESTS, r
        # Little's law per replication, within 1 %: L and W from the log, the arrival rate from
        # the workload's own arrivals
        assert r["L"] == pytest.approx(r["lam"] * r["W"], rel=0.01), r
    lat = np.array([r["mean_latency"] for r in rows])
    m, lo, hi = _ci99(lat)
    assert abs(m - w_theory) / w_theory < 0.05, (m, w_theory)
    assert lo <= w_theory <= hi, (lo, w_theory, hi)
    util = np.array([r["util"] for r in rows])
    um, ulo, uhi = _ci99(util)
    assert ulo <= RHO <= uhi, (ulo, RHO, uhi)
    little = max(abs(r["L"] / (r["lam"] * r["W"]) - 1) for r in rows)
    return {"W_theory": w_theory, "W_mean": m, "W_ci": (lo, hi), "rel_err": m / w_theory - 1,
            "util_mean": um, "util_ci": (ulo, uhi), "little_max_rel_err": little}


def test_erlang_c_reference_values():
    # M/M/1: W = 1/(mu - lambda); M/M/2 at a = 1.4: P(wait) = 0.5765 (tables).
    assert erlang_c(1, 0.7, 1.0)[1] == pytest.approx(1 / 0.3)
    pw, w = erlang_c(2, 14.0, 10.0)
    assert pw == pytest.approx(0.576470588, rel=1e-8)
    assert w == pytest.approx(pw / 6.0 + 0.1)


def test_mmc_pdp_matches_erlang_c(tmp_path):
    print("M/M/2 rho 0.7, 10 x 20k:", check_mmc(tmp_path, 10))  # figures for the note (-s)


@pytest.mark.slow
def test_mmc_pdp_matches_erlang_c_30_replications(tmp_path):
    print("M/M/2 rho 0.7, 30 x 20k:", check_mmc(tmp_path, 30))
