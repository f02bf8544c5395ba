"""Metrics against hand-computed values, and properties every run must have."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simharness import metrics
from simharness.controls.base import World, make
from simharness.engine import A, simulate
from simharness.workload import build_workload
from tests.conftest import make_spec

ONE_AGENT = dict(
    horizon="1h",
    agents=[{"name": "support", "count": 1, "role": {"crm_api": ["read"], "docs": ["read"]},
             "task_rate": "2/h", "tasks": {"lookup": 1}}],
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
    # Each token: W(G) x (ttl - task time), clipped at the horizon for the last ones.
    expected = sum(w * (min(c.expires, 3600) - c.issued) - w * min(10, 3600 - c.issued)
                   for c in tokens)
    assert m["exposure"] == pytest.approx(expected, rel=1e-9)
    full = [c for c in tokens if c.expires <= 3600]
    assert full and expected >= len(full) * w * (300 - 10)


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
