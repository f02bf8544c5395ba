"""Large runs: workloads sampled per agent as the run reads them, and logs streamed through the
running tally instead of kept (issue 20). A streamed run must report the bytes a kept run does,
and the tally must agree with a recount of the kept log."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simharness import engine, metrics
from simharness.actions import Delegation
from simharness.controls.base import World, make
from simharness.engine import A, T, simulate
from simharness.loader import list_scenarios, load_scenario
from simharness.tally import Tally
from simharness.workload import build_workload

SHORT = ["horizon=40m", "warmup=5m", "replications=1"]


def _runs(spec, entry, **kw):
    control = make(entry.name, entry.model, entry.params, World(spec))
    return simulate(build_workload(spec, 0), control, **kw)


def _report(log) -> str:
    """Everything a run reports, as text (NaN compares equal as text)."""
    return repr((metrics.compute(log), metrics.misuse_outcomes(log),
                 metrics.task_times(log).tobytes(), metrics.latency_quantiles(log),
                 metrics.credential_exposure(log)))


@pytest.mark.parametrize("name", [n for n, _ in list_scenarios()])
def test_a_streamed_run_reports_the_bytes_of_a_kept_one(name, monkeypatch):
    """Chunks of 7 actions: many hand-overs, steps still executing at most of them (their
    credential terms wait), flags arriving after their action's chunk is gone."""
    monkeypatch.setattr(engine, "CHUNK_ROWS", 7)
    spec = load_scenario(name, overrides=SHORT)
    for entry in spec.controls:
        kept = _runs(spec, entry)
        streamed = _runs(spec, entry, keep_log=False)
        assert len(kept.actions) > 7, (name, entry.name)
        assert _report(streamed) == _report(kept), (name, entry.name)
        # and the same as a tally of the whole kept log in one go
        assert _report(kept) == _report(_without_tally(kept)), (name, entry.name)
        assert streamed.tasks == [] and len(streamed.actions) < 7


def _without_tally(log):
    import dataclasses

    return dataclasses.replace(log, tally=None)


def test_the_tally_agrees_with_a_recount_of_the_log():
    spec = load_scenario("baseline", overrides=["horizon=2h", "warmup=10m"])
    entry = spec.control("per_action_policy")
    log = _runs(spec, entry)
    lo = spec.warmup
    after = [r for r in log.actions if r[A["time"]] >= lo]
    m = metrics.compute(log)
    assert m["actions"] == len(after) > 500
    assert m["executed_actions"] == sum(1 for r in after if r[A["allowed"]])
    legit = [r for r in after if r[A["misuse_id"]] < 0]
    assert (m["legit_actions"], m["legit_denied"]) == (
        len(legit), sum(1 for r in legit if not r[A["allowed"]]))
    lat = sorted(r[A["latency"]] * 1e3 for r in after)
    assert m["decision_max_ms"] == lat[-1]
    assert m["decision_p50_ms"] == pytest.approx(float(np.percentile(lat, 50)), rel=1e-12)
    top = [r for r in log.tasks if r[T["depth"]] == 0 and r[T["arrival"]] >= lo]
    assert m["tasks_completed"] == sum(1 for r in top if r[T["status"]] == "completed")
    assert m["tasks_failed"] == sum(1 for r in top if r[T["status"]] == "failed")
    waits = [r[T["start"]] - r[T["arrival"]] for r in top]
    assert m["task_wait_mean_s"] == pytest.approx(sum(waits) / len(waits), rel=1e-12)
    clean = [r[T["end"]] - r[T["start"]] for r in top
             if r[T["status"]] == "completed" and r[T["misuse_id"]] < 0]
    assert m["task_time_mean_s"] == pytest.approx(sum(clean) / len(clean), rel=1e-12)
    assert m["tasks"] == sum(1 for t in log.workload.tasks if lo <= t.arrival < spec.horizon)


def test_a_step_still_executing_at_a_hand_over_is_cut_by_a_later_revocation():
    """credential_exposure's term of a step under a credential revoked while the step runs
    ends at the revocation, even when the step's chunk was handed over before it."""
    from simharness.controls.base import Credential
    from tests.unit.test_metrics import P1, _act

    cred = Credential(0, "a0", frozenset({P1}), 4.0, 0.0)
    t = Tally(0.0, 1000.0, 0, [cred], {P1: 4.0})
    t.add_actions([_act(100.0, duration=50.0, credential=0)], now=120.0)  # runs to 150
    assert len(t.credential_use) == 0  # held back: a revocation before 150 would cut it
    cred.revoked = 130.0
    t.add_actions([], now=math.inf)
    assert list(t.credential_use) == [-4.0 * 30.0]
    # A step that ended before the hand-over is final at once.
    t.add_actions([_act(200.0, duration=10.0, credential=0)], now=300.0)
    assert len(t.credential_use) == 1  # credential 0 ended at 130: nothing in use after


def test_an_agents_tasks_depend_on_nothing_but_its_own_streams():
    """Each agent samples from its own streams: its tasks are the same whether it is sampled
    first or last, alone or after every other agent, and whatever other agents exist."""
    spec = load_scenario("baseline", overrides=["horizon=3h"])
    wl = build_workload(spec, 0)
    last = wl.agents[-1].index

    def shown(tasks):
        return [(t.id, t.arrival, [(getattr(s, "perm", None), s.think) for s in t.steps])
                for t in tasks]

    alone = shown(build_workload(spec, 0).agent_tasks(last))
    assert alone and shown(t for t in wl.tasks if t.agent == last) == alone
    first = wl.agents[0]
    more = load_scenario("baseline", overrides=[
        "horizon=3h", f"agents.{first.archetype}.count={sum(a.archetype == first.archetype for a in wl.agents) + 3}"])
    grown = build_workload(more, 0)
    # the first agent keeps its arrivals, types and steps (ids move: they number all tasks)
    a = [(t.arrival, t.type, [s.think for s in t.steps]) for t in wl.agent_tasks(0)]
    b = [(t.arrival, t.type, [s.think for s in t.steps]) for t in grown.agent_tasks(0)]
    assert a and a == b


def test_task_and_misuse_ids_number_the_workload():
    """Top-level tasks are numbered in workload order (agents in order, then arrival), a
    misuse instance takes its task's id, and sub-task ids are unique."""
    spec = load_scenario("multi_agent_pipeline", overrides=["horizon=3h"])
    wl = build_workload(spec, 0)
    tops = wl.tasks
    assert [t.id for t in tops] == list(range(len(tops))) == list(range(wl.n_top))
    assert [(t.agent, t.arrival) for t in tops] == sorted((t.agent, t.arrival) for t in tops)
    ids = [t.id for t in wl.iter_tasks()]
    assert len(ids) == len(set(ids)) and len(ids) > len(tops)  # delegations
    assert any(isinstance(s, Delegation) for t in tops for s in t.steps)
    assert wl.misuse and all(m.id == m.task and tops[m.task].misuse_id == m.id
                             for m in wl.misuse)


def test_a_run_samples_its_workload_as_it_goes(monkeypatch):
    """The engine reads each agent's tasks as it gets to them: after a run the workload holds
    no task list, and reading an agent's first task samples AHEAD tasks, not all of them."""
    from simharness import workload

    spec = load_scenario("baseline", overrides=["horizon=8h"])
    wl = build_workload(spec, 0)
    entry = spec.control("jit_per_task")
    simulate(wl, make(entry.name, entry.model, entry.params, World(spec)), keep_log=False)
    assert wl._tasks is None
    sampled = []
    real = workload.WorkloadBuilder._task

    def spy(self, ttype, agent, arrival, depth):
        sampled.append(depth)
        return real(self, ttype, agent, arrival, depth)

    monkeypatch.setattr(workload.WorkloadBuilder, "_task", spy)
    agent = wl.working_agents()[0]
    first = next(wl.agent_tasks(agent))
    assert first.arrival == wl._arrivals[agent][0]
    assert sampled.count(0) == workload.AHEAD < len(wl._arrivals[agent])


def test_sampling_ahead_changes_no_value(monkeypatch):
    """An agent's tasks are sampled AHEAD at a time for speed; one at a time gives the same
    workload (its streams are its own), and so does a whole-workload materialisation."""
    from simharness import workload

    spec = load_scenario("multi_agent_pipeline", overrides=["horizon=2h"])
    digests = set()
    for ahead in (1, 3, 16):
        monkeypatch.setattr(workload, "AHEAD", ahead)
        digests.add(build_workload(spec, 0).digest())
    wl = build_workload(spec, 0)
    assert wl.tasks  # materialised: the digest reads the held tasks
    digests.add(wl.digest())
    assert len(digests) == 1


def _instance_tally(horizon: float = 1000.0):
    from types import SimpleNamespace as NS

    from simharness.actions import MisuseInstance
    from tests.unit.test_metrics import _act

    t = Tally(0.0, horizon, 1, [], {})
    m = MisuseInstance(7, "exfiltration", 0, 0, 10.0)
    rec = [0, 0, "x", 0, 10.0, 10.0, 999.5, "completed", 7, "a0"]  # ends 0.5 s before 1000
    return t, m, rec, NS(attacker=(), replay=()), _act, NS


def test_a_flag_on_a_misuse_actions_setup_step_does_not_detect_the_misuse():
    """Only a flagged goal action detects an instance: here the goal action executes unflagged
    and the instance's setup action is flagged, so the misuse is missed."""
    t, m, rec, task, act, NS = _instance_tally()
    t.add_actions([act(20.0, identity="a0", misuse_id=7, goal=True),
                   act(30.0, identity="a0", misuse_id=7, goal=False)], math.inf)
    t.flag("a0", 7, False)
    t.task_ended(rec, 0, [m], task)
    out = metrics.misuse_outcomes(NS(tally=t))
    assert [(o["detected"], o["missed"]) for o in out] == [(0, 1)]
    t.flag("a0", 7, True)
    assert [(o["detected"], o["missed"]) for o in metrics.misuse_outcomes(NS(tally=t))] == [(1, 0)]


def test_an_instance_without_attacker_or_replay_uses_counts_up_to_the_horizon():
    """No uses after the task: the instance has its outcome when the task ends, even half a
    second before the horizon (nothing is left to happen)."""
    t, m, rec, task, act, NS = _instance_tally()
    t.task_ended(rec, 0, [m], task)
    assert t.counted == {7: "exfiltration"}
    t2, m, rec, _, act, NS = _instance_tally()
    t2.task_ended(rec, 0, [m], NS(attacker=(NS(think=0.6),), replay=()))  # one lands past it
    assert t2.counted == {}


def test_a_step_under_a_credential_is_clipped_to_the_credential_and_the_window():
    """credential_exposure's negative term of an executed step: from request time + latency
    for its duration, clipped to the credential's life and to [warm-up, horizon]."""
    from simharness.controls.base import Credential
    from tests.unit.test_metrics import P1, _act

    late = Credential(0, "a0", frozenset({P1}), 4.0, 100.0, expires=110.0)  # lives 100-110
    t = Tally(50.0, 1000.0, 0, [late], {P1: 4.0})
    # asked at 100 s, decided 5 s later: executes 105-125, under the credential until 110
    t.add_actions([_act(100.0, latency=5.0, duration=20.0, credential=0)], math.inf)
    # executes 90-120: before the credential was issued (100) it was not in use under it
    t.add_actions([_act(89.0, latency=1.0, duration=30.0, credential=0)], math.inf)
    assert list(t.credential_use) == [-4.0 * 5.0, -4.0 * 10.0]
    always = Credential(0, "a0", frozenset({P1}), 4.0, 0.0)
    t = Tally(50.0, 1000.0, 0, [always], {P1: 4.0})
    t.add_actions([_act(40.0, latency=0.0, duration=20.0, credential=0)], math.inf)  # 40-60
    assert list(t.credential_use) == [-4.0 * 10.0]  # only its part after the warm-up


def test_a_task_arriving_exactly_at_the_warm_up_counts_in_the_waits():
    t = Tally(100.0, 1000.0, 0, [], {})
    t.task_started([0, 0, "x", 0, 100.0, 104.0, math.nan, "in_flight", -1, "a0"])
    t.task_started([1, 0, "x", 0, 99.9, 130.0, math.nan, "in_flight", -1, "a0"])  # warm-up
    t.task_started([2, 0, "x", 1, 200.0, 230.0, math.nan, "in_flight", -1, "a0"])  # sub-task
    assert list(t.waits) == [4.0]


def test_counts_add_up_across_hand_overs():
    """Every count of the tally is a sum over chunks, not the last chunk's: two chunks of one
    timeout, one full-queue rejection allowed without a decision, one executed action each."""
    from tests.unit.test_metrics import _act

    chunk = [_act(10.0, allowed=False, reasons="pdp-timeout-fail-closed"),
             _act(11.0, without_decision=True, reasons="pdp-queue-full-fail-open",
                  attributed=False, visible=False),
             _act(12.0)]
    t = Tally(0.0, 100.0, 0, [], {})
    t.add_actions(chunk, 50.0)
    t.add_actions(chunk, math.inf)
    assert (t.actions, t.executed, t.legit, t.legit_denied) == (6, 4, 6, 2)
    assert (t.timeouts, t.rejections, t.without_decision) == (2, 2, 2)
    assert (t.attributed, t.invisible) == (2, 2)
