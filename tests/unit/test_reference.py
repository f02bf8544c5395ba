"""Task times under `none` from the workload's arithmetic (simharness/reference.py), against
the engine's own run of `none`, and against times worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import simharness
from simharness import metrics, reference
from simharness import sweeps as sweeping
from simharness.controls.base import World, make
from simharness.engine import simulate
from simharness.loader import load_scenario
from simharness.workload import build_workload
from tests.conftest import make_spec

SCENARIOS = sorted(Path(__file__).resolve().parents[2].glob("scenarios/*.yaml"))


def _engine_times(workload) -> np.ndarray:
    spec = workload.spec
    return metrics.task_times(simulate(workload, make("none", "none", {}, World(spec)),
                                       probe=False))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_bit_for_bit_the_engine_run_of_none_on_every_shipped_scenario(path):
    """Horizons that cut tasks, sub-tasks and attacks short; no warm-up and the scenario's."""
    for horizon, warmup in (("4m", "0s"), ("45m", "0s"), (None, None)):
        overrides = [] if horizon is None else [f"horizon={horizon}", f"warmup={warmup}"]
        spec = load_scenario(path, overrides=overrides)
        for rep in range(2):
            workload = build_workload(spec, rep)
            assert reference.arithmetic_applies(workload)
            ours, engine = reference.none_task_times(workload), _engine_times(workload)
            assert ours.tobytes() == engine.tobytes(), (path.stem, horizon, rep)


def test_times_worked_out_by_hand(tmp_path):
    """Constant think 2 s and step 1 s: answer_ticket (3 steps) takes 3 x 3 = 9 s; refund a
    read (3 s), then think 2 s and the delegated one-step issue_refund (3 s) = 8 s; reconcile
    6 s. An agent starts a task at max(arrival, end of its previous one); a task that would end
    at or after the horizon is still running, and its agent starts nothing more."""
    spec = load_scenario(_dump(make_spec(horizon="3h", replications=1), tmp_path), overrides=[
        "timing.think={dist: constant, value: 2s}", "timing.step={dist: constant, value: 1s}",
        "agents.0.task_rate=40/h"])  # busy enough that some tasks queue behind others
    workload = build_workload(spec, 0)
    takes = {"answer_ticket": 9.0, "refund": 8.0, "reconcile": 6.0}
    expected = np.full(len(workload.tasks), np.nan)
    free: dict[int, float] = {}
    queued = cut = 0
    for k, t in enumerate(workload.tasks):
        start = max(t.arrival, free.get(t.agent, 0.0))
        queued += start > t.arrival
        end = free[t.agent] = start + takes[t.type]
        if end < spec.horizon:
            expected[k] = end - start
        elif start < math.inf:
            cut += 1
            free[t.agent] = math.inf  # still running at the horizon
    ours = reference.none_task_times(workload)
    assert queued > 0 and cut > 0
    assert np.array_equal(np.isnan(ours), np.isnan(expected))
    assert np.allclose(ours[~np.isnan(ours)], expected[~np.isnan(expected)], rtol=0, atol=1e-9)


def test_concurrent_agents_are_left_to_the_engine(tmp_path):
    """Agents with several slots: the hidden `none` run is simulated (a full result row)."""
    spec = load_scenario(_dump(make_spec(horizon="20m", replications=1), tmp_path),
                         overrides=["agents.0.concurrency=3"])
    assert not reference.arithmetic_applies(build_workload(spec, 0))
    task = next(t for t in sweeping.plan([({}, spec)], ["static_iam"]) if t.hidden)
    assert "exposure" in sweeping.run_one(task)["row"]


def test_hidden_reference_gives_the_inflation_an_explicit_none_run_gives(tmp_path):
    """Task inflation of a control against the hidden `none` (arithmetic) equals the one
    against `none` asked for explicitly (a simulation), byte for byte."""
    spec = load_scenario("baseline", overrides=["horizon=1h", "replications=2"])
    hidden = simharness.sweep(spec, controls=["jit_per_task"], out=tmp_path / "h")
    shown = simharness.sweep(spec, controls=["jit_per_task", "none"], out=tmp_path / "s")
    a = hidden.summary[["task_inflation", "task_time_added_s"]]
    b = shown.summary[shown.summary.control == "jit_per_task"][["task_inflation",
                                                               "task_time_added_s"]]
    assert a.to_numpy().tobytes() == b.to_numpy().tobytes()
    assert (a["task_inflation"] > 0).all()  # per-task credentials cost time: not a 0 = 0


def _dump(spec, folder: Path) -> Path:
    from simharness.loader import dump_scenario

    path = folder / f"{spec.name}.yaml"
    path.write_text(dump_scenario(spec), encoding="utf-8")
    return path


def test_edges_the_engine_and_the_arithmetic_agree_on(tmp_path):
    """Hand-made arrivals with constant times (a 3-step task takes exactly 9 s): a task
    arriving at the warm-up's end counts; one ending exactly at the horizon is still running
    (the kernel runs only wake-ups before the horizon), and its agent starts nothing after it.
    The engine's run of `none` and the arithmetic agree, and both are as worked out."""
    spec = load_scenario(_dump(make_spec(horizon="1h", warmup="100s", replications=1),
                               tmp_path), overrides=[
        "timing.think={dist: constant, value: 2s}", "timing.step={dist: constant, value: 1s}",
        "agents.0.tasks={answer_ticket: 1}"])
    workload = build_workload(spec, 0)
    mine = [t for t in workload.tasks if t.agent == 0][:4]
    for task, arrival in zip(mine, (100.0, 200.0, 3591.0, 3600.0), strict=True):
        task.arrival = arrival
    workload.tasks = mine
    ours, engine = reference.none_task_times(workload), _engine_times(workload)
    assert ours.tobytes() == engine.tobytes()
    assert np.array_equal(ours, [9.0, 9.0, np.nan, np.nan], equal_nan=True)


def test_a_last_step_waking_exactly_at_the_horizon_never_runs(tmp_path):
    """Think 2 s and instant steps: a 3-step task arriving 6 s before the horizon would wake
    for its last step exactly at the horizon, which the kernel never runs: still running."""
    spec = load_scenario(_dump(make_spec(horizon="1h", replications=1), tmp_path), overrides=[
        "timing.think={dist: constant, value: 2s}", "timing.step={dist: constant, value: 0s}",
        "agents.0.tasks={answer_ticket: 1}"])
    workload = build_workload(spec, 0)
    mine = [t for t in workload.tasks if t.agent == 0][:2]
    for task, arrival in zip(mine, (100.0, 3594.0), strict=True):
        task.arrival = arrival
    workload.tasks = mine
    ours, engine = reference.none_task_times(workload), _engine_times(workload)
    assert ours.tobytes() == engine.tobytes()
    assert np.array_equal(ours, [6.0, np.nan], equal_nan=True)
