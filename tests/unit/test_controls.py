"""Control models: plug-in checks, and the orderings that must emerge on the baseline."""

from __future__ import annotations

import pandas as pd
import pytest

import simharness
from simharness.controls.base import registered
from simharness.testing import check_control

LAYERED = {"members": [{"model": "static_iam"}, {"model": "per_action_policy"}]}


@pytest.mark.parametrize("model", sorted(registered()))
def test_check_control_passes_for_every_model(model):
    check_control(model, LAYERED if model == "layered" else None)


def test_check_control_rejects_a_control_that_turns_errors_into_allows():
    from simharness.controls.base import Control, Decision

    class Sloppy(Control):
        model = "sloppy"

        def decide(self, req):
            return Decision(True, ("oops",), ("TypeError: boom",))

    with pytest.raises(AssertionError, match="error became an allow"):
        check_control(Sloppy)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline")
    res = simharness.run("baseline", overrides=["replications=4", "horizon=3h"], out=out)
    agg = res.aggregate.set_index("control")
    mis = res.misuse.groupby(["control", "kind"])[["injected", "prevented", "detected"]].sum()
    return agg, mis


def caught(mis: pd.DataFrame, control: str, kind: str) -> float:
    row = mis.loc[(control, kind)]
    return (row["prevented"] + row["detected"]) / row["injected"]


def test_exposure_ordering(baseline):
    agg, _ = baseline
    e = agg["exposure_mean"]
    assert e["static_iam"] == pytest.approx(e["sse_only"], rel=0.02)
    # Standing role grants against authority that lives only while a task runs: orders of
    # magnitude apart. Per-task tokens and per-action decisions on the same declared scopes
    # hold about the same authority.
    assert e["sse_only"] > 50 * max(e["jit_per_task"], e["per_action_policy"])
    assert e["per_action_policy"] == pytest.approx(e["jit_per_task"], rel=0.25)


def test_misuse_caught_ordering(baseline):
    agg, _ = baseline
    c = agg["misuse_caught_rate_mean"]
    assert c["per_action_policy"] >= c["jit_per_task"] >= c["static_iam"]
    assert c["sse_only"] > c["static_iam"]


def test_decision_latency_ordering(baseline):
    agg, _ = baseline
    assert agg.loc["per_action_policy", "decision_p99_ms_mean"] > agg.loc["static_iam", "decision_p99_ms_mean"]


def test_sse_stops_exfiltration_but_not_destruction(baseline):
    _, mis = baseline
    assert caught(mis, "sse_only", "exfiltration") == 1.0
    assert caught(mis, "sse_only", "destructive_action") == 0.0


def test_jit_stops_unneeded_capability(baseline):
    _, mis = baseline
    # Not all: a predicted declared scope sometimes adds the very capability (the token then
    # covers it, with reason token-valid); a prediction is not the plan.
    assert caught(mis, "jit_per_task", "unneeded_capability") >= 0.5
    assert caught(mis, "static_iam", "unneeded_capability") == 0.0


# The control knows each task's plan: what is checked here is revocation and expiry, not scope.
PLAN_KNOWN = ("declared_scope.source=plan",)


def test_jit_revocation_decides_token_replay(tmp_path):
    base = ["replications=2", "horizon=3h", "misuse.rate=0.3", "misuse.kinds={token_replay: 1}",
            "misuse.params.replay_delay=2m", *PLAN_KNOWN]
    on = simharness.run("baseline", controls=["jit_per_task"], overrides=base, out=tmp_path / "on")
    off = simharness.run("baseline", controls=["jit_per_task"], out=tmp_path / "off",
                         overrides=[*base, "controls.jit_per_task.revoke_on_complete=false"])
    long_ttl_replay = simharness.run(
        "baseline", controls=["jit_per_task"], out=tmp_path / "late",
        overrides=[*base, "controls.jit_per_task.revoke_on_complete=false",
                   "misuse.params.replay_delay=20m"])
    rate = lambda r: r.aggregate["misuse_caught_rate_mean"].iloc[0]  # noqa: E731
    assert rate(on) == 1.0          # revoked at completion: the replay is refused
    assert rate(off) == 0.0         # within the 15 min ttl the old token still works
    assert rate(long_ttl_replay) == 1.0  # after the ttl it has expired


def test_pdp_overload_fail_closed_denies_and_fail_open_lets_misuse_through(tmp_path):
    overload = ["replications=2", "horizon=1h", "misuse.rate=0.2",
                "controls.per_action_policy.pdp.servers=1",
                "controls.per_action_policy.pdp.service_time={dist: exponential, mean: 300ms}",
                "controls.per_action_policy.pdp.timeout=100ms"]
    closed = simharness.run("baseline", controls=["per_action_policy"], overrides=overload,
                            out=tmp_path / "closed").aggregate.iloc[0]
    opened = simharness.run("baseline", controls=["per_action_policy"], out=tmp_path / "open",
                            overrides=[*overload, "controls.per_action_policy.pdp.fail_mode=open"]
                            ).aggregate.iloc[0]
    normal = simharness.run("baseline", controls=["per_action_policy"], out=tmp_path / "normal",
                            overrides=overload[:3]).aggregate.iloc[0]
    assert closed["false_deny_rate_mean"] > normal["false_deny_rate_mean"] + 0.1
    assert opened["allowed_without_decision_mean"] > 0
    assert opened["misuse_caught_rate_mean"] < normal["misuse_caught_rate_mean"]


def test_in_plan_attacks_need_argument_or_flow_aware_controls(tmp_path):
    """On in_plan_attacks: a per-task policy stops tampered arguments, data-flow tracking stops
    exfiltration through an approved channel; role, proxy and per-task token controls see a
    planned call and stop neither."""
    res = simharness.run("in_plan_attacks", overrides=["replications=3", "horizon=4h"],
                         controls=["static_iam", "sse_only", "jit_per_task", "task_policy",
                                   "data_flow"], out=tmp_path)
    mis = res.misuse.groupby(["control", "kind"])[["injected", "prevented", "detected"]].sum()
    assert caught(mis, "task_policy", "argument_tampering") >= 0.95
    assert caught(mis, "data_flow", "in_plan_exfiltration") >= 0.95
    for control in ("static_iam", "sse_only", "jit_per_task"):
        for kind in ("argument_tampering", "in_plan_exfiltration"):
            assert caught(mis, control, kind) <= 0.1, (control, kind)
