"""Metamorphic relations between runs on the same workload (issue 10).

The runs hold timing fixed across policies so that a relation is exact, not statistical: step
time 0, PDP latency 0 (infinite servers, constant 0 service) and `on_deny: skip`. Then a
denial changes neither when later actions happen nor which actions are requested, and the
only difference between two policies is which requests they allow. Capabilities
(`capability_ttl`) make exposure of `per_action_policy` non-zero. No detector: a detector with
`revoke_on_deviation` legitimately breaks monotonicity (a stricter policy executes fewer risky
actions, so fewer quarantines follow, so later actions may be allowed).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simharness import metrics
from simharness.controls.base import World, make
from simharness.engine import simulate
from simharness.spec import ScenarioSpec
from simharness.workload import build_workload
from tests.conftest import MINI

SHIPPED_RULES = Path(__file__).resolve().parents[2] / "controls" / "policies" / "agent_rules.yaml"
KINDS = ["exfiltration", "out_of_scope_resource", "unneeded_capability", "destructive_action",
         "credential_theft", "token_replay", "confused_deputy", "goal_hijack", "impersonation",
         "token_passthrough", "unscoped_delegation", "stale_authorization", "resource_overload"]


def scenario(on_deny: str = "skip", sensitivity_scale: float = 1.0, **extra) -> ScenarioSpec:
    data = copy.deepcopy(MINI)
    data.update({
        "horizon": "3h",
        "warmup": "10m",
        "on_deny": on_deny,
        "timing": {"think": {"dist": "exponential", "mean": "2s"}, "step": 0},
        "misuse": {"rate": 0.4, "kinds": {k: 1 for k in KINDS}},
    })
    if sensitivity_scale != 1.0:
        sens = {"public": 0, "internal": 1, "confidential": 4, "restricted": 16}
        data["weights"] = {
            "sensitivity": {k: v * sensitivity_scale for k, v in sens.items()},
            "action": {"read": 1, "write": 2, "send": 2, "delete": 4, "admin": 8}}
    data.update(extra)
    return ScenarioSpec.model_validate(data)


def policy_control(policy: Path, ttl: str = "2m") -> dict:
    return {"name": "pap", "model": "per_action_policy", "params": {
        "policy": str(policy), "capability_ttl": ttl,
        "pdp": {"servers": math.inf, "rtt": 0, "service_time": 0, "timeout": math.inf}}}


def run(spec: ScenarioSpec, control: dict, rep: int = 0, workload=None) -> dict:
    w = workload if workload is not None else build_workload(spec, rep)
    log = simulate(w, make(control["name"], control["model"], control.get("params", {}),
                           World(spec)))
    m = metrics.compute(log)
    m["_allowed"] = {(r[5], r[0], r[8], r[9], r[10]) for r in log.actions if r[17]}
    m["_requested"] = len(log.actions)
    return m


def write_rules(path: Path, rules: list[dict], default: str = "deny") -> Path:
    path.write_text(yaml.safe_dump({"policy_version": 1, "default": default, "rules": rules}))
    return path


def base_rules() -> list[dict]:
    return yaml.safe_load(SHIPPED_RULES.read_text())["rules"]


@pytest.fixture(scope="module")
def spec() -> ScenarioSpec:
    return scenario()


@pytest.fixture(scope="module")
def workloads(spec):
    return [build_workload(spec, r) for r in range(2)]


@pytest.fixture(scope="module")
def base_runs(spec, workloads, tmp_path_factory):
    pol = write_rules(tmp_path_factory.mktemp("base") / "base.yaml", base_rules())
    return [run(spec, policy_control(pol), workload=w) for w in workloads]


def test_workload_has_misuse_and_exposure(base_runs):
    # The relations below are only meaningful if there is something to compare.
    for m in base_runs:
        assert m["misuse_injected"] > 10
        assert m["exposure"] > 0
        assert 0 < m["executed_actions"] < m["actions"]


DENY_CONDITIONS = st.one_of(
    st.builds(lambda v: {"tool": v}, st.sampled_from(["crm_api", "sql", "docs", "http"])),
    st.builds(lambda v: {"action": v}, st.sampled_from(["read", "write", "send", "delete", "admin"])),
    st.builds(lambda v: {"resource": v},
              st.sampled_from(["crm", "ledger", "wiki", "outbound_mail", "paste_site"])),
    st.builds(lambda v: {"risk": {"gt": v}}, st.floats(0.05, 0.95)),
    st.builds(lambda v: {"resource.sensitivity": v},
              st.sampled_from(["public", "internal", "confidential", "restricted"])),
    st.builds(lambda v: {"in_scope": v}, st.booleans()),
    st.builds(lambda v: {"chain.depth": {"ge": v}}, st.integers(0, 2)),
    st.builds(lambda v: {"agent": {"in": v}},
              st.lists(st.sampled_from([f"support-{i}" for i in range(4)]), min_size=1)),
)


@settings(max_examples=12, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conds=st.lists(DENY_CONDITIONS, min_size=1, max_size=3))
def test_added_deny_rule_never_raises_exposure_damage_or_allows(conds, spec, workloads,
                                                                base_runs, tmp_path_factory):
    when: dict = {}
    for c in conds:
        when.update(c)
    rules = [*base_rules(), {"id": "extra-deny", "effect": "deny", "when": when}]
    pol = write_rules(tmp_path_factory.mktemp("strict") / "strict.yaml", rules)
    for w, base in zip(workloads, base_runs, strict=True):
        m = run(spec, policy_control(pol), workload=w)
        assert m["_requested"] == base["_requested"]  # skip + fixed timing: same requests
        assert m["_allowed"] <= base["_allowed"]
        assert m["executed_actions"] <= base["executed_actions"]
        assert m["exposure"] <= base["exposure"] + 1e-9
        assert m["damage"] <= base["damage"] + 1e-9
        assert m["misuse_caught_rate"] >= base["misuse_caught_rate"] - 1e-12
        assert m["false_deny_rate"] >= base["false_deny_rate"] - 1e-12


def test_added_deny_rule_with_abort_and_instant_tasks(tmp_path):
    # on_deny abort: a denial drops the task's later steps; with think 0 nothing shifts in time.
    spec = scenario("abort", timing={"think": 0, "step": 0})
    base = write_rules(tmp_path / "b.yaml", base_rules())
    strict = write_rules(tmp_path / "s.yaml", [*base_rules(), {
        "id": "no-crm-write", "effect": "deny", "when": {"tool": "crm_api", "action": "write"}}])
    w = build_workload(spec, 0)
    mb, ms = run(spec, policy_control(base), workload=w), run(spec, policy_control(strict), workload=w)
    assert ms["_allowed"] <= mb["_allowed"]
    assert ms["_allowed"] < mb["_allowed"]  # the rule bites
    assert ms["exposure"] <= mb["exposure"] and ms["damage"] <= mb["damage"]


def test_deny_all(spec, workloads, tmp_path):
    pol = write_rules(tmp_path / "deny.yaml", [], default="deny")
    for w in workloads:
        m = run(spec, policy_control(pol), workload=w)
        assert m["executed_actions"] == 0
        assert m["damage"] == 0
        assert m["exposure"] == 0
        assert m["false_deny_rate"] == 1.0
        assert m["misuse_injected"] > 0 and m["misuse_caught_rate"] == 1.0
        assert m["actions_denied"] == m["actions"]


@pytest.mark.parametrize("control", ["allow_rules", "none"])
def test_allow_all_catches_nothing(spec, workloads, tmp_path, control):
    if control == "none":
        ctl = {"name": "none", "model": "none"}
    else:
        ctl = policy_control(write_rules(tmp_path / "allow.yaml", [], default="allow"))
    for w in workloads:
        m = run(spec, ctl, workload=w)
        assert m["misuse_injected"] > 0
        assert m["misuse_caught_rate"] == 0.0
        assert m["misuse_prevented"] == 0 and m["misuse_detected"] == 0
        assert m["actions_denied"] == 0 and m["false_deny_rate"] == 0.0
        assert m["damage"] > 0


@pytest.mark.parametrize("control", ["static_iam", "jit_per_task", "per_action_policy", "none"])
def test_doubling_weights_doubles_exposure_and_damage(control, tmp_path):
    if control == "per_action_policy":
        ctl = policy_control(write_rules(tmp_path / "allow.yaml", base_rules()))
    else:
        ctl = {"name": control, "model": control}
    one, two = scenario(), scenario(sensitivity_scale=2.0)
    w1, w2 = build_workload(one, 0), build_workload(two, 0)
    assert w1.digest() == w2.digest() or [t.id for t in w1.tasks] == [t.id for t in w2.tasks]
    m1, m2 = run(one, ctl, workload=w1), run(two, ctl, workload=w2)
    assert m1["_allowed"] == m2["_allowed"]
    for k in ("exposure", "damage", "standing_exposure", "blast_radius"):
        assert m2[k] == pytest.approx(2 * m1[k], rel=1e-9, abs=1e-9), k
    assert m1["exposure"] > 0 or control == "none"
    assert m1["damage"] > 0
