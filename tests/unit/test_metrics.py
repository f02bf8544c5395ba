"""Metrics against hand-computed values, and properties every run must have."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simharness import metrics
from simharness.controls.base import World, make
from simharness.engine import A, simulate
from simharness.tally import Tally
from simharness.workload import build_workload
from tests.conftest import make_spec

ONE_AGENT = dict(
    horizon="1h",
    agents=[{"name": "support", "count": 1, "role": {"crm_api": ["read"], "docs": ["read"]},
             "task_rate": "6/h", "tasks": {"lookup": 1}}],
    tasks={"lookup": {"steps": [{"tool": "crm_api", "action": "read", "resource": "crm"}]}},
    timing={"think": 0, "step": "10s"},
)


def run(spec, name, model, params=None):
    wl = build_workload(spec, 0)
    return simulate(wl, make(name, model, params or {}, World(spec)))


def test_static_iam_exposure_is_role_weight_times_horizon_minus_use():
    spec = make_spec(**ONE_AGENT)
    log = run(spec, "static_iam", "static_iam", {"check": 0})
    m = metrics.compute(log)
    role_weight = 4 * 1 + 1 * 1  # crm read (confidential x read) + wiki read (internal x read)
    executed = sum(1 for r in log.actions if r[A["allowed"]])
    assert executed > 0
    expected = role_weight * 3600 - executed * 4 * 10  # minus the weight in use while executing
    assert m["exposure"] == pytest.approx(expected, rel=1e-9)
    # The agent is idle except during its 10 s tasks: standing = weight x idle time.
    assert m["standing_exposure"] == pytest.approx(role_weight * (3600 - executed * 10), rel=1e-9)


JIT_EXACT = {"granularity": "permission", "check": 0,
             "token_service": {"servers": math.inf, "rtt": 0, "service_time": 0}}


def test_jit_permission_scope_with_revocation_has_zero_exposure():
    spec = make_spec(**ONE_AGENT)
    m = metrics.compute(run(spec, "jit", "jit_per_task", JIT_EXACT))
    assert m["tokens_issued"] > 0
    assert m["exposure"] == pytest.approx(0.0, abs=1e-9)


def test_jit_without_revocation_leaves_ttl_overhang():
    spec = make_spec(**ONE_AGENT)
    params = {**JIT_EXACT, "revoke_on_complete": False, "ttl": "5m"}
    log = run(spec, "jit", "jit_per_task", params)
    m = metrics.compute(log)
    w = 4.0
    tokens = [c for c in log.ledger.credentials if c.kind == "task"]
    # W(G) over the union of the tokens' lives (one permission: overlapping tokens grant it
    # once), clipped at the horizon, minus W(G) while each task's one step executes.
    live, reach = 0.0, 0.0
    for c in sorted(tokens, key=lambda c: c.issued):
        lo, hi = max(c.issued, reach), min(c.expires, 3600)
        live += max(hi - lo, 0.0)
        reach = max(reach, hi)
    expected = w * live - sum(w * min(10, 3600 - c.issued) for c in tokens)
    assert m["exposure"] == pytest.approx(expected, rel=1e-9)
    full = [c for c in tokens if c.expires <= 3600]
    assert full and expected >= w * (300 - 10)  # at least one whole overhang


def test_none_has_zero_task_inflation_and_rates_are_rates(tmp_path):
    import simharness

    res = simharness.run("baseline", overrides=["replications=2", "horizon=1h"], out=tmp_path)
    s = res.summary
    assert (s.loc[s.control == "none", "task_inflation"] == 0).all()
    for col in ("misuse_caught_rate", "false_deny_rate", "task_success_rate",
                "audit_attribution_rate", "invisible_action_rate"):
        v = s[col].dropna()
        assert ((v >= 0) & (v <= 1)).all(), col
    assert (s.misuse_prevented + s.misuse_detected <= s.misuse_injected).all()
    assert (s.exposure >= 0).all() and (s.standing_exposure <= s.exposure + 1e-6).all()


def test_a_run_does_not_depend_on_the_other_controls(tmp_path):
    import simharness

    both = simharness.run("baseline", overrides=["replications=2", "horizon=1h"], out=tmp_path / "a",
                          controls=["static_iam", "jit_per_task"]).summary
    alone = simharness.run("baseline", overrides=["replications=2", "horizon=1h"], out=tmp_path / "b",
                           controls=["jit_per_task"]).summary
    cols = [c for c in alone.columns if c not in ("control",)]
    a = both[both.control == "jit_per_task"][cols].reset_index(drop=True)
    b = alone[cols].reset_index(drop=True)
    assert a.equals(b)


def test_blast_radius_of_a_never_expiring_credential():
    spec = make_spec(**ONE_AGENT)
    m = metrics.compute(run(spec, "static_iam", "static_iam", {"check": 0}))
    # One credential live for the whole hour: E[W x remaining] = W x H / 2.
    assert m["blast_radius"] == pytest.approx(5 * 3600 / 2)
    assert not math.isnan(m["exposure_per_agent_hour"])


def test_paired_inflation_by_hand():
    from simharness.metrics import paired_inflation

    nan = float("nan")
    # Tasks 0 and 2 completed under both: (2 + 4) / (1 + 2) - 1 = 1.0, (6 - 3) / 2 = 1.5 s added.
    assert paired_inflation(np.array([2.0, nan, 4.0]), np.array([1.0, 1.0, 2.0])) == (1.0, 1.5)
    # Three tasks failed early under the control: they are in neither sum, so it cannot look
    # faster than `none` by failing (the one it completed took 12 s against 10 s).
    assert paired_inflation(np.array([nan, nan, nan, 12.0]), np.full(4, 10.0)) == (
        pytest.approx(0.2), 2.0)
    # No time under the reference: 0 if none was added, inf otherwise; nothing paired: NaN.
    assert paired_inflation(np.zeros(2), np.zeros(2)) == (0.0, 0.0)
    assert paired_inflation(np.array([1.0, 0.0]), np.zeros(2))[0] == math.inf
    assert all(math.isnan(x) for x in paired_inflation(np.array([nan]), np.array([1.0])))


def test_task_inflation_in_a_run_is_paired_with_none(tmp_path):
    """The summary's task_inflation equals the paired ratio computed here from the two runs'
    own task records (tasks that completed under both, clean, after the warm-up)."""
    import simharness
    from simharness.controls.base import World, make
    from simharness.engine import COMPLETED, T, simulate
    from simharness.loader import load_scenario
    from simharness.workload import build_workload

    spec = load_scenario("baseline", overrides=["horizon=2h", "replications=1"])
    res = simharness.run(spec, controls=["jit_per_task"], out=tmp_path / "out")
    times = {}
    for name in ("none", "jit_per_task"):
        entry = spec.control(name) if name != "none" else None
        control = (make(entry.name, entry.model, entry.params, World(spec)) if entry
                   else make("none", "none", {}, World(spec)))
        log = simulate(build_workload(spec, 0), control)
        times[name] = {r[T["task"]]: r[T["end"]] - r[T["start"]] for r in log.tasks
                       if r[T["depth"]] == 0 and r[T["status"]] == COMPLETED
                       and r[T["misuse_id"]] < 0 and r[T["arrival"]] >= spec.warmup}
    common = times["none"].keys() & times["jit_per_task"].keys()
    assert 0 < len(common) < len(times["none"])  # jit fails some tasks none completes
    expected = (sum(times["jit_per_task"][i] for i in common)
                / sum(times["none"][i] for i in common) - 1)
    row = res.summary[res.summary.control == "jit_per_task"].iloc[0]
    assert row.task_inflation == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("timeout, fail_mode, expect", [
    ("5ms", "closed", "all"), ("5ms", "open", "all"), ("20ms", "closed", "none")])
def test_decision_timeouts_counted_and_denied_when_failing_closed(tmp_path, timeout, fail_mode,
                                                                   expect):
    """A PDP with a constant 10 ms service and no queue: a 5 ms timeout is missed by every
    request, a 20 ms one by none (by construction, no simulation needed to know it)."""
    import simharness
    from simharness.spec import ScenarioSpec
    from tests.unit.test_budget import TINY

    data = {**TINY, "controls": [{"name": "pdp", "model": "per_action_policy", "params": {
        "pdp": {"servers": "inf", "rtt": 0, "service_time": "10ms", "timeout": timeout,
                "fail_mode": fail_mode}, "detector": None, "revoke_on_deviation": False}}]}
    res = simharness.run(ScenarioSpec.model_validate(data), controls=["pdp"],
                         out=tmp_path / "out", overrides=["replications=1"])
    row = res.summary[res.summary.control == "pdp"].iloc[0]
    assert row.actions > 100
    if expect == "none":
        assert row.decision_timeouts == 0 and row.decision_timeout_rate == 0
        return
    assert row.decision_timeouts == row.actions and row.decision_timeout_rate == 1.0
    if fail_mode == "closed":
        assert row.actions_denied == row.actions and row.executed_actions == 0
    else:
        assert row.actions_denied == 0 and row.allowed_without_decision == row.actions


def test_policy_evaluations_count_the_actions_a_pdp_answered(tmp_path):
    """One PDP on every action, no cache: each action issued after the warm-up is evaluated
    once unless its PDP timed out, so evaluations = actions - timeouts (the warm-up edge counts
    by issue time, as actions do)."""
    import simharness

    res = simharness.run("baseline", controls=["per_action_policy"], out=tmp_path / "o",
                         overrides=["horizon=1h", "warmup=20m", "replications=2"])
    for _, row in res.summary[res.summary.control == "per_action_policy"].iterrows():
        assert row.policy_evaluations == row.actions - row.decision_timeouts > 0


def test_review_metrics_from_the_desk_by_hand():
    """_review reads the reviewer desk: 6 approvals over a measured 2 h are 3 per hour; waits
    1..5 s have median 3 s and (linear) 95th percentile 1 + 0.95 x 4 = 4.8 s; 1 of the 4
    judged misuse escalations approved; utilization as the desk says."""
    from types import SimpleNamespace

    desk = SimpleNamespace(requested=6, waits=[5.0, 1.0, 4.0, 2.0, 3.0], timeouts=2,
                           misuse_escalated=5, misuse_judged=4, misuse_approved=1,
                           utilization=lambda: 0.25)
    log = SimpleNamespace(review=desk, warmup=600.0, horizon=600.0 + 7200.0)
    assert metrics._review(log) == {
        "approvals_requested": 6, "approvals_requested_per_hour": 3.0,
        "approval_wait_p50_s": 3.0, "approval_wait_p95_s": pytest.approx(4.8),
        "review_timeouts": 2, "misuse_escalated": 5, "misuse_judged": 4,
        "misuse_approved_actions": 1, "misuse_approved": 0.25, "reviewer_utilization": 0.25}
    # No verdicts yet: NaN quantiles and share, the counts as they are.
    desk.waits, desk.misuse_judged = [], 0
    out = metrics._review(log)
    assert math.isnan(out["approval_wait_p50_s"]) and math.isnan(out["approval_wait_p95_s"])
    assert math.isnan(out["misuse_approved"]) and out["approvals_requested"] == 6
    # A control that never escalates has no desk: every review metric is NaN.
    out = metrics._review(SimpleNamespace(review=None, warmup=0.0, horizon=1.0))
    assert len(out) == 10 and all(math.isnan(v) for v in out.values())


# --------------------------------------------------------------------------- a run log by hand
# A small log built record by record; every number below is worked out by hand from it.

P1 = ("crm_api", "read", "crm")


def _act(time, **kw):
    from simharness.engine import ACTION_FIELDS

    base = {f: None for f in ACTION_FIELDS}
    base.update(time=time, identity="a0", tool=P1[0], action=P1[1], resource=P1[2],
                misuse_id=-1, goal=False, allowed=True, reasons="", latency=0.0, duration=0.0,
                credential=-1, visible=True, attributed=True, without_decision=False, weight=0.0)
    base.update(kw)
    return tuple(base[f] for f in ACTION_FIELDS)


def _task(task, depth, arrival, start, end, status, misuse_id=-1):
    from simharness.engine import TASK_FIELDS

    row = dict(task=task, agent="a0", type="t", depth=depth, arrival=arrival, start=start,
               end=end, status=status, misuse_id=misuse_id, identity="a0")
    return tuple(row[f] for f in TASK_FIELDS)


def _hand_log():
    """Warm-up 100 s, horizon 1100 s (1000 s measured), two agents.

    Actions (time, latency ms): #0 at 50 s is in the warm-up; #1 200 s 10 ms legit, executes
    20 s under credential 0; #2 300 s 30 ms legit, denied by a PDP timeout; #3 400 s 0 ms legit,
    allowed without a decision after a full queue, unattributed and invisible; #4 500 s 20 ms
    legit of a1, denied by a revocation (a1 is flagged: collateral); #5 600 s 40 ms, a1's goal
    action of misuse 0, executes (damage 2.5), flagged; #6 700 s 50 ms goal of misuse 1, denied;
    #7 710 s 60 ms a non-goal action of misuse 1, executes; #8 210 s 70 ms goal of misuse 6,
    executes 5 s under credential 0 (damage 1), not flagged."""
    from types import SimpleNamespace as NS

    from simharness.controls.base import Credential
    from simharness.engine import COMPLETED, FAILED

    actions = [
        _act(50.0, latency=0.5),
        _act(200.0, latency=0.010, duration=20.0, credential=0),
        _act(300.0, latency=0.030, allowed=False, reasons="pdp-timeout-fail-closed"),
        _act(400.0, without_decision=True, reasons="pdp-queue-full-fail-open", attributed=False,
             visible=False),
        _act(500.0, identity="a1", latency=0.020, allowed=False, reasons="x;credential-revoked"),
        _act(600.0, identity="a1", latency=0.040, misuse_id=0, goal=True, weight=2.5),
        _act(700.0, latency=0.050, misuse_id=1, goal=True, allowed=False, reasons="deny"),
        _act(710.0, latency=0.060, misuse_id=1),
        _act(210.0, latency=0.070, misuse_id=6, goal=True, weight=1.0, duration=5.0,
             credential=0),
    ]
    tasks = [_task(0, 0, 150.0, 160.0, 260.0, COMPLETED), _task(1, 0, 250.0, 250.0, 300.0, FAILED),
             _task(2, 0, 550.0, 580.0, 720.0, COMPLETED, 0),
             _task(3, 1, 300.0, 300.0, 1000.0, COMPLETED),
             _task(4, 0, 50.0, 50.0, 90.0, COMPLETED), _task(5, 0, 650.0, 650.0, 800.0, FAILED, 1)]
    think = {5: [NS(think=200.0)], 3: [NS(think=500.0)]}  # task 3's replay lands after the horizon
    wl_tasks = [NS(id=i, arrival=a, attacker=think.get(i, []), replay=[])
                for i, a in enumerate((150.0, 250.0, 550.0, 300.0, 50.0, 650.0))]
    misuse = [NS(id=0, task=2, arrival=550.0, kind="exfiltration"),
              NS(id=1, task=5, arrival=650.0, kind="out_of_scope_resource"),
              NS(id=2, task=1, arrival=250.0, kind="exfiltration"),  # no goal action: unreached
              NS(id=3, task=99, arrival=300.0, kind="exfiltration"),  # its task never ended
              NS(id=4, task=0, arrival=50.0, kind="exfiltration"),  # arrived in the warm-up
              NS(id=5, task=3, arrival=300.0, kind="exfiltration"),  # censored at the horizon
              NS(id=6, task=0, arrival=150.0, kind="exfiltration")]
    creds = [Credential(0, "a0", frozenset({P1}), 4.0, 0.0),
             Credential(1, "a0", frozenset({P1}), 2.0, 1050.0, expires=1200.0, kind="task"),
             Credential(2, "a0", frozenset({P1}), 1.0, 50.0, expires=150.0, kind="task"),
             Credential(3, "a0", frozenset(), 0.0, 200.0, expires=300.0, kind="task")]
    return NS(warmup=100.0, horizon=1100.0, actions=actions, tasks=tasks, flagged={5},
              workload=NS(tasks=wl_tasks, misuse=misuse, agents=["a0", "a1"], weight={P1: 4.0},
                          arrived=lambda lo, hi: sum(lo <= t.arrival < hi for t in wl_tasks)),
              ledger=NS(credentials=creds), review=None, policy_evaluations=6,
              stations={"pdp": NS(free=[0.0], busy=250.0, servers=2)},
              authority=NS(exposure=NS(total=7200.0, curve=lambda: (
                  np.array([100.0, 600.0, 1100.0]), np.array([0.0, 3000.0, 7200.0]))),
                  standing=123.0, blast_num=10.0, blast_den=4.0))


def test_collateral_counts_revocation_denials_of_flagged_identities_only():
    """Collateral denials: legitimate actions of a flagged identity denied by a revocation
    reason. Here two (a1, revoked and quarantined); not a1's denial for another reason, not
    a0's revocation denial (a0 was never flagged), not a1's misuse action."""

    actions = [
        _act(10.0, identity="a1", misuse_id=0, goal=True),  # flagged (index 0)
        _act(20.0, identity="a1", allowed=False, reasons="x;credential-revoked"),
        _act(30.0, identity="a1", allowed=False, reasons="identity-quarantined"),
        _act(40.0, identity="a1", allowed=False, reasons="not-in-role"),
        _act(50.0, identity="a0", allowed=False, reasons="token-revoked"),
        _act(60.0, identity="a1", misuse_id=0, allowed=False, reasons="credential-revoked"),
        _act(5.0, identity="a1", allowed=False, reasons="credential-revoked"),  # warm-up
    ]
    t = Tally(8.0, math.inf, 0, [], {})
    t.add_actions(actions, math.inf)
    t.flag("a1", 0, True)  # action 0 flagged
    assert (t.collateral, t.legit_denied, t.legit) == (2, 4, 4)


def test_misuse_outcomes_by_hand():
    """Counted: misuse 0 (detected), 1 (prevented; its non-goal action does not count), 2
    (unreached), 6 (missed); 3 (task never ended), 4 (warm-up) and 5 (censored) are not. Kinds in
    catalogue order, not alphabetical."""
    assert metrics.misuse_outcomes(_hand_log()) == [
        {"kind": "out_of_scope_resource", "injected": 1, "prevented": 1, "detected": 0,
         "missed": 0, "unreached": 0, "damage": 0.0},
        {"kind": "exfiltration", "injected": 2, "prevented": 0, "detected": 1, "missed": 1,
         "unreached": 1, "damage": 3.5}]


def test_credential_exposure_by_hand():
    """Credential 0: 4 x 1000 s measured, minus 4 x 20 s and 4 x 5 s in use; credential 1:
    2 x (1100 - 1050); credential 2: 1 x (150 - 100); credential 3 weighs nothing."""
    assert metrics.credential_exposure(_hand_log()) == pytest.approx(4000 - 80 - 20 + 100 + 50)


def test_compute_by_hand():
    m = metrics.compute(_hand_log())
    nan_keys = {k for k, v in m.items() if isinstance(v, float) and math.isnan(v)}
    assert nan_keys == {"task_inflation", "task_time_added_s", "approvals_requested",
                        "approvals_requested_per_hour", "approval_wait_p50_s",
                        "approval_wait_p95_s", "review_timeouts", "misuse_escalated",
                        "misuse_judged", "misuse_approved_actions", "misuse_approved",
                        "reviewer_utilization"}
    expected = {
        "tasks": 5, "tasks_completed": 2, "tasks_failed": 2, "tasks_ended": 4, "actions": 8,
        "actions_denied": 3, "decision_timeouts": 1, "decision_timeout_rate": 1 / 8,
        "decision_rejections": 1, "legit_actions": 4, "legit_denied": 2, "collateral_denials": 1,
        "executed_actions": 5, "misuse_injected": 3, "misuse_prevented": 1, "misuse_detected": 1,
        "misuse_missed": 1, "misuse_unreached": 1, "misuse_caught": 2,
        "misuse_caught_rate": 2 / 3, "damage": 3.5, "exposure": 7200.0,
        "credential_exposure": 4050.0, "standing_exposure": 123.0,
        "exposure_per_agent_hour": 7200.0 / (2 * 1000 / 3600), "blast_radius": 2.5,
        "false_deny_rate": 0.5, "task_success_rate": 0.5,
        # latencies (ms) 10 30 0 20 40 50 60 70: mean 35; linear quantiles of the sorted 8
        "decision_mean_ms": 35.0, "decision_p50_ms": 35.0, "decision_p95_ms": 66.5,
        "decision_p99_ms": 69.3, "decision_max_ms": 70.0,
        "task_time_mean_s": 100.0,  # task 0 only: task 2 carried misuse
        "task_wait_mean_s": 10.0, "task_wait_p95_s": 27.0,  # waits 10 0 30 0
        "pdp_utilization": 250.0 / (2 * 1000.0), "policy_evaluations": 6,
        "tokens_issued": 2,  # credentials 1 and 3 (2 was issued in the warm-up, 0 is a role)
        "allowed_without_decision": 1, "audit_attributed": 4, "audit_attribution_rate": 4 / 5,
        "invisible_actions": 1, "invisible_action_rate": 1 / 5}
    assert {k: v for k, v in m.items() if k not in nan_keys} == pytest.approx(expected)
    # The exposure total passed in by a caller that has the curve already is used as it is.
    assert metrics.compute(_hand_log(), exposure=1.0)["exposure"] == 1.0


def test_compute_without_a_pdp_station_or_actions():
    from types import SimpleNamespace as NS

    log = _hand_log()
    log.stations = {"pdp": NS(free=None, busy=1.0, servers=1)}
    assert math.isnan(metrics.compute(log)["pdp_utilization"])
    log.stations = {}
    assert math.isnan(metrics.compute(log)["pdp_utilization"])
    log.actions, log.tasks, log.workload.agents, log.flagged = [], [], [], set()
    log.authority.exposure.total = -3.0  # float noise below zero reads as none
    m = metrics.compute(log)
    for k in ("decision_mean_ms", "decision_p50_ms", "decision_p95_ms", "decision_p99_ms",
              "decision_max_ms", "task_time_mean_s", "task_wait_mean_s", "task_wait_p95_s",
              "decision_timeout_rate", "false_deny_rate", "task_success_rate",
              "misuse_caught_rate", "exposure_per_agent_hour", "audit_attribution_rate"):
        assert math.isnan(m[k]), k
    assert m["exposure"] == 0.0 and m["actions"] == 0 and m["misuse_injected"] == 0


def test_task_times_and_latency_quantiles_by_hand():
    log = _hand_log()
    t = metrics.task_times(log)
    assert t[0] == 100.0 and np.isnan(t[1:]).all() and len(t) == 6
    q = metrics.latency_quantiles(log)
    assert q["q"] == pytest.approx(np.linspace(0, 1, 201).tolist())
    assert (q["ms"][0], q["ms"][100], q["ms"][200]) == pytest.approx((0.0, 35.0, 70.0))
    log.actions, log.flagged = [], set()
    assert metrics.latency_quantiles(log) == {"q": [], "ms": []}


def test_blast_radius_and_exposure_need_a_probed_run():
    """Without probing (probe=False) they are not measured: NaN, on the usual grid."""
    log = _hand_log()
    log.authority.blast_num, log.authority.blast_den = 1.0, 0.5  # a probe over half a second
    assert metrics.blast_radius(log) == 2.0
    log.authority.blast_den = 0.0
    assert metrics.blast_radius(log) == 0.0
    log.authority = None
    assert math.isnan(metrics.blast_radius(log))
    grid, curve, total = metrics.exposure_curve(log)
    assert math.isnan(total) and np.isnan(curve).all()
    assert len(grid) == len(curve) == 97 and grid[0] == log.warmup and grid[-1] == log.horizon


def test_exposure_curve_is_the_probe_curve_and_its_total_at_least_zero():
    log = _hand_log()
    grid, curve, total = metrics.exposure_curve(log)
    assert grid.tolist() == [100.0, 600.0, 1100.0] and curve.tolist() == [0.0, 3000.0, 7200.0]
    assert total == 7200.0
    log.authority.exposure.total = -1e-9
    assert metrics.exposure_curve(log)[2] == 0.0


def test_paired_inflation_with_under_a_second_of_reference_time():
    """0.5 s under the reference, 1 s under the control: inflation 1.0, 0.5 s added."""
    from simharness.metrics import paired_inflation

    assert paired_inflation(np.array([1.0]), np.array([0.5])) == (1.0, 0.5)


def test_edges_of_the_measured_window_by_hand():
    """What happens exactly at the warm-up counts; an instance whose last attacker use lands
    exactly at the horizon has its outcome; a misuse's damage sums over its executed goal
    actions (2.5 + 0.5 here)."""
    from types import SimpleNamespace as NS

    log = _hand_log()
    log.actions[1] = _act(100.0, latency=0.010, duration=20.0, credential=0)
    t = metrics.measured(log)
    assert t.actions == 8 and len(t.latency) == 8
    log.workload.misuse[0].arrival = 100.0
    log.workload.tasks[5].attacker = [NS(think=300.0)]  # task 5 ends at 800: 800 + 300 = horizon
    log.actions.append(_act(610.0, identity="a1", misuse_id=0, goal=True, weight=0.5))
    assert metrics.misuse_outcomes(log) == [
        {"kind": "out_of_scope_resource", "injected": 1, "prevented": 1, "detected": 0,
         "missed": 0, "unreached": 0, "damage": 0.0},
        {"kind": "exfiltration", "injected": 2, "prevented": 0, "detected": 1, "missed": 1,
         "unreached": 1, "damage": 4.0}]


def test_credential_exposure_clips_steps_at_the_horizon_and_unweighted_permissions():
    """A step from 1090 s for 20 s under credential 0 is in use only until the horizon (4 x 10
    off); a credential for a permission the workload gives no weight (3 x 1000 s) loses
    nothing while its step runs."""
    from simharness.controls.base import Credential

    p2 = ("docs", "read", "wiki")
    log = _hand_log()
    log.actions.append(_act(1090.0, duration=20.0, credential=0))
    log.ledger.credentials.append(Credential(4, "a0", frozenset({p2}), 3.0, 0.0))
    log.actions.append(_act(300.0, tool=p2[0], action=p2[1], resource=p2[2], duration=10.0,
                            credential=4))
    assert metrics.credential_exposure(log) == pytest.approx(4050 - 40 + 3000)


def test_failed_and_completed_tasks_are_counted_apart():
    """The hand log plus one more completed top-level task: 3 completed, 2 failed (the hand
    log alone has 2 and 2, which a swapped count would not notice)."""
    from types import SimpleNamespace

    from simharness.engine import COMPLETED

    log = _hand_log()
    log.tasks.append(_task(6, 0, 900.0, 900.0, 950.0, COMPLETED))
    log.workload.tasks.append(SimpleNamespace(id=6, arrival=900.0, attacker=[], replay=[]))
    m = metrics.compute(log)
    assert (m["tasks_completed"], m["tasks_failed"], m["tasks_ended"]) == (3, 2, 5)


def test_a_task_arriving_exactly_at_the_warm_up_counts_in_task_times():
    """Arrival at 100 s = the warm-up: measured (the warm-up ends there); at 99.9 s: not."""
    from types import SimpleNamespace as NS

    from simharness.engine import COMPLETED

    tasks = [_task(0, 0, 100.0, 100.0, 130.0, COMPLETED), _task(1, 0, 99.9, 99.9, 120.0, COMPLETED)]
    log = NS(warmup=100.0, horizon=1000.0, tasks=tasks, actions=[], flagged=set(),
             ledger=NS(credentials=[]),
             workload=NS(tasks=[NS(id=0, arrival=100.0, attacker=[], replay=[]),
                                NS(id=1, arrival=99.9, attacker=[], replay=[])],
                         misuse=[], weight={}))
    out = metrics.task_times(log)
    assert out[0] == 30.0 and math.isnan(out[1])


def test_credential_exposure_does_not_depend_on_the_order_of_its_terms():
    """Exactly rounded (math.fsum): the same figure to the last bit with the log's actions in
    reverse, where a dot product or a pairwise sum would round differently (and did, between
    two machines' BLAS builds)."""
    import dataclasses

    from simharness.controls.base import World, make
    from simharness.engine import simulate
    from simharness.loader import load_scenario
    from simharness.workload import build_workload

    spec = load_scenario("baseline", overrides=["horizon=2h", "warmup=0s"])
    e = spec.control("jit_per_task")
    log = simulate(build_workload(spec, 0), make(e.name, e.model, e.params, World(spec)),
                   probe=False)
    flipped = dataclasses.replace(log, actions=log.actions[::-1], tally=None)  # tallied afresh
    assert len(log.tally.credential_use) + len(log.ledger.credentials) > 1000
    assert metrics.credential_exposure(flipped) == metrics.credential_exposure(log)
