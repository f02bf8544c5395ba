"""Shared helpers for the M/M/c validation: Erlang-C and a PDP-only scenario."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np

from simharness.controls.base import World, make
from simharness.engine import A, simulate
from simharness.spec import ScenarioSpec
from simharness.workload import build_workload
from tests.conftest import MINI


def erlang_c(c: int, lam: float, mu: float) -> tuple[float, float]:
    """(probability of waiting, mean time in system W = Wq + 1/mu) of an M/M/c queue."""
    a = lam / mu
    rho = a / c
    assert rho < 1
    s = sum(a**k / math.factorial(k) for k in range(c))
    top = a**c / math.factorial(c) / (1 - rho)
    pw = top / (s + top)
    return pw, pw / (c * mu - lam) + 1 / mu


def allow_all_policy(tmp: Path) -> Path:
    p = tmp / "allow_all.yaml"
    p.write_text("policy_version: 1\ndefault: allow\nrules: []\n")
    return p


def mmc_spec(policy: Path, *, servers: int, mean_service: float, rho: float, requests: int,
             warmup_requests: int, agents: int = 5000, seed: int = 11) -> ScenarioSpec:
    """Poisson arrivals (superposition of many slow single-step agents) into a c-server PDP."""
    lam = rho * servers / mean_service
    horizon = (requests + warmup_requests) / lam
    data = copy.deepcopy(MINI)
    data.update({
        "name": "mmc",
        "horizon": horizon,
        "warmup": warmup_requests / lam,
        "seed": seed,
        "agents": [{"name": "a", "count": agents, "role": {"docs": ["read"]},
                    "identity": "per_agent", "task_rate": f"{lam / agents}/s",
                    "tasks": {"one": 1}}],
        "tasks": {"one": {"steps": [{"tool": "docs", "action": "read", "resource": "wiki"}]}},
        "timing": {"think": 0, "step": 0},
        "misuse": {"rate": 0.0},
        "controls": [{"name": "pdp", "model": "per_action_policy", "params": {
            "policy": str(policy),
            "pdp": {"servers": servers, "rtt": 0,
                    "service_time": {"dist": "exponential", "mean": mean_service},
                    "timeout": math.inf, "fail_mode": "closed"}}}],
    })
    return ScenarioSpec.model_validate(data)


def run_rep(spec: ScenarioSpec, rep: int) -> dict[str, float]:
    """One replication: mean sojourn, arrival rate, time-average number in system, utilisation."""
    w = build_workload(spec, rep)
    entry = spec.controls[0]
    log = simulate(w, make(entry.name, entry.model, entry.params, World(spec)))
    lo, hi = log.warmup, log.horizon
    t = np.array([r[A["time"]] for r in log.actions])
    lat = np.array([r[A["latency"]] for r in log.actions])
    assert all(r[A["allowed"]] for r in log.actions)
    # Little's law on [lo, end]: `end` leaves room so that no request arriving inside is censored.
    end = hi - 50 * spec.controls[0].params["pdp"]["service_time"]["mean"]
    inside = (t >= lo) & (t < end)
    # Arrivals counted from the workload (sampled before the engine ran), not from the log
    # Little's law is checked on: the log must have decided each of them once, at its time.
    arrivals = np.array([task.arrival for task in w.iter_tasks()])
    n = int(((arrivals >= lo) & (arrivals < end)).sum())
    lam_hat = n / (end - lo)
    w_hat = float(lat[inside].mean())
    # time-average number in system: integral of the clipped sojourn intervals / window
    l_hat = float(np.clip(np.minimum(t + lat, end) - np.maximum(t, lo), 0, None).sum()) / (end - lo)
    measured = t >= lo
    pdp = log.stations["pdp"]
    return {
        "n": int(measured.sum()),
        "mean_latency": float(lat[measured].mean()),
        "lam": lam_hat,
        "W": w_hat,
        "L": l_hat,
        "util": pdp.busy / (pdp.servers * (hi - lo)),
    }
