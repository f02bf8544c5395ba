"""The engine on a small scenario, and the bare SimPy model it is compared with."""

from __future__ import annotations

import pytest

from simharness import bench
from simharness.controls.base import World, make
from simharness.engine import A, simulate
from simharness.units import parse_duration, parse_rate
from simharness.workload import build_workload

pytestmark = pytest.mark.benchmark

AGENTS, STEPS, SERVERS, HORIZON, RATE = 50, 3, 8, "15m", "60/h"


@pytest.fixture(scope="module")
def spec():
    return bench.speed_scenario(AGENTS, STEPS, SERVERS, HORIZON, RATE)


def test_engine_run(benchmark, spec):
    entry = spec.controls[0]
    world = World(spec)
    workload = build_workload(spec, 0)

    def run():
        return simulate(workload, make(entry.name, entry.model, entry.params, world))

    log = benchmark(run)

    benchmark.extra_info["actions"] = len(log.actions)
    assert log.actions
    # Every action is planned, attested and in role: the policy allows each one (a PDP
    # timeout, not a decision, is the only way to a denial here).
    reasons = {rec[A["reasons"]] for rec in log.actions}
    assert reasons <= {"permit-planned-action", "pdp-timeout-fail-closed"}
    assert sum(rec[A["allowed"]] for rec in log.actions) >= 0.99 * len(log.actions)


def test_bare_simpy(benchmark):
    n = benchmark(bench.bare_simpy, AGENTS, STEPS, SERVERS, parse_duration(HORIZON),
                  parse_rate(RATE))
    assert n > 0


def test_whole_process_at_least_as_fast_as_bare_simpy():
    """Issue target: on the 200-agent, 3-step, 8-server-PDP workload, simharness (workload
    sampling, control, engine) runs at least as many actions per second as a bare SimPy model
    of the same event structure, both measured in this run (best of 5 each)."""
    r = bench.engine_speed(repeats=5)
    assert r["simharness_actions"] > 30_000 and r["bare_actions"] > 30_000
    assert r["ratio"] >= 1.0, r


def test_engine_on_its_kernel_is_faster_than_on_simpy(capsys):
    """Like for like (issue 15): the same engine and processes on the kernel and on
    simpy.Environment, both measured in this run; events per action printed for each (the bare
    SimPy model schedules about 6 per action, the engine under 2 on either backend)."""
    r = bench.engine_speed(repeats=3)
    with capsys.disabled():
        print(f"\nkernel vs simpy: {r['kernel_vs_simpy']:.2f}x; events per action: "
              f"{r['events_per_action']}")
    assert r["kernel_vs_simpy"] >= 1.0, r
    assert r["events_per_action"]["kernel"] < 2 and r["events_per_action"]["simpy"] < 2.5
