"""Fault injection (issue 10): a decision that errors or times out is never an allow under
fail-closed, and an allow without a decision is counted (`allowed_without_decision`) under
fail-open."""

from __future__ import annotations

import copy
import math

import pytest

from simharness import metrics
from simharness.controls import base as control_base
from simharness.controls.base import Decision, World, make
from simharness.controls.per_action_policy import PerActionPolicy
from simharness.engine import A, simulate
from simharness.spec import ScenarioSpec
from simharness.workload import build_workload
from tests.conftest import MINI


def spec_with(control: dict, **extra) -> ScenarioSpec:
    data = copy.deepcopy(MINI)
    data.update({"horizon": "2h", "warmup": "5m", "on_deny": "skip",
                 "misuse": {"rate": 0.2}, "controls": [control]})
    data.update(extra)
    return ScenarioSpec.model_validate(data)


def run(spec: ScenarioSpec, rep: int = 0):
    e = spec.controls[0]
    log = simulate(build_workload(spec, rep), make(e.name, e.model, e.params, World(spec)))
    return log, metrics.compute(log)


def pap(tmp_path, *, fail_mode: str, timeout, service, servers=2, default="allow", rules=""):
    pol = tmp_path / f"{default}.yaml"
    pol.write_text(f"policy_version: 1\ndefault: {default}\nrules: [{rules}]\n")
    return {"name": "pap", "model": "per_action_policy", "params": {
        "policy": str(pol),
        "pdp": {"servers": servers, "rtt": 0, "service_time": service, "timeout": timeout,
                "fail_mode": fail_mode}}}


# -- PDP timeouts --------------------------------------------------------------------------

@pytest.mark.parametrize("servers", [2, math.inf])
def test_pdp_always_times_out_fail_closed_never_allows(tmp_path, servers):
    spec = spec_with(pap(tmp_path, fail_mode="closed", timeout="1ms", service="5ms",
                         servers=servers))
    log, m = run(spec)
    assert m["actions"] > 100
    assert m["executed_actions"] == 0 and m["damage"] == 0
    assert m["allowed_without_decision"] == 0
    assert all(r[A["reasons"]] == "pdp-timeout-fail-closed" for r in log.actions)
    assert all(r[A["latency"]] == pytest.approx(0.001) for r in log.actions)


@pytest.mark.parametrize("servers", [2, math.inf])
def test_pdp_always_times_out_fail_open_counts_every_allow(tmp_path, servers):
    # A deny-everything policy behind the PDP: any allow is the fail-open path.
    spec = spec_with(pap(tmp_path, fail_mode="open", timeout="1ms", service="5ms",
                         servers=servers, default="deny"))
    log, m = run(spec)
    assert m["actions"] > 100
    assert m["executed_actions"] == m["actions"]
    assert m["allowed_without_decision"] == m["actions"]
    assert all(r[A["without_decision"]] for r in log.actions)


@pytest.mark.parametrize("servers", [1, 2, math.inf])
def test_partial_timeouts_closed_vs_open(tmp_path, servers):
    # Exponential service around the timeout: some requests are answered, some are not.
    service = {"dist": "exponential", "mean": "2ms"}
    closed = spec_with(pap(tmp_path, fail_mode="closed", timeout="2ms", service=service,
                           servers=servers))
    opened = spec_with(pap(tmp_path, fail_mode="open", timeout="2ms", service=service,
                           servers=servers, default="deny"))
    log_c, m_c = run(closed)
    log_o, m_o = run(opened)
    timed_out_c = [r for r in log_c.actions if r[A["reasons"]].startswith("pdp-timeout")]
    assert 0 < len(timed_out_c) < len(log_c.actions)
    assert not any(r[A["allowed"]] for r in timed_out_c)
    assert m_c["allowed_without_decision"] == 0
    # fail-open over a deny-all policy: exactly the timed-out requests are allowed, all counted
    measured = [r for r in log_o.actions if r[A["time"]] >= log_o.warmup]
    timed_out_o = [r for r in measured if r[A["reasons"]] == "pdp-timeout-fail-open"]
    assert timed_out_o
    assert m_o["allowed_without_decision"] == len(timed_out_o) == m_o["executed_actions"]
    assert all(r[A["latency"]] <= 0.002 + 1e-12 for r in log_o.actions)


# -- a control whose evaluation raises ------------------------------------------------------

class Exploding(PerActionPolicy):
    """per_action_policy whose decision raises on every other request (a PDP bug)."""

    model = "test_exploding_pdp"
    calls = 0

    def decide(self, req):
        type(self).calls += 1
        if type(self).calls % 2:
            raise RuntimeError("policy engine crashed")
        return super().decide(req)


@pytest.fixture
def exploding():
    """Register the exploding model for one test only (the registry is process-global)."""
    control_base.get_model("none")  # load the built-ins first
    control_base.register(Exploding)
    yield Exploding
    control_base._REGISTRY.pop(Exploding.model, None)


@pytest.mark.parametrize("fail_mode", ["closed", "open"])
def test_raising_control_never_allows_under_fail_closed(tmp_path, fail_mode, exploding):
    entry = pap(tmp_path, fail_mode=fail_mode, timeout=math.inf, service=0)
    entry["model"] = "test_exploding_pdp"
    log, m = run(spec_with(entry))
    crashed = [r for r in log.actions if "error" in r[A["reasons"]] and r[A["time"]] >= log.warmup]
    assert crashed
    if fail_mode == "closed":
        assert not any(r[A["allowed"]] for r in crashed)
    else:
        assert m["allowed_without_decision"] == len([r for r in crashed if r[A["allowed"]]]) > 0


# -- rules whose predicates raise (the built-in engine's own guard) -------------------------

@pytest.mark.parametrize("effect", ["allow", "deny"])
def test_erroring_rule_never_allows(tmp_path, effect):
    # `resource.sensitivity` is a string: `lt: 5` raises TypeError inside the predicate.
    rule = f"{{id: broken, effect: {effect}, when: {{resource.sensitivity: {{lt: 5}}}}}}"
    spec = spec_with(pap(tmp_path, fail_mode="closed", timeout=math.inf, service=0,
                         default="deny" if effect == "allow" else "allow", rules=rule))
    log, m = run(spec)
    assert m["actions"] > 100
    assert m["executed_actions"] == 0
    assert all("broken" in r[A["reasons"]] or "evaluation-error" in r[A["reasons"]]
               for r in log.actions)


def test_erroring_rule_reports_errors(tmp_path):
    from simharness.policy.rules import compile_rules

    pol = compile_rules({"default": "allow", "rules": [
        {"id": "broken", "effect": "allow", "when": {"resource.sensitivity": {"lt": 5}}}]})
    spec = spec_with({"name": "none", "model": "none"})
    log, _ = run(spec)
    # Re-decide a real request from the engine with the erroring policy.
    from simharness.engine import Engine

    eng = Engine(build_workload(spec, 0), make("none", "none", {}, World(spec)))
    task = eng.w.tasks[0]
    agent = eng.w.agents[task.agent]
    step = next(s for s in task.steps if hasattr(s, "perm"))
    req = eng._request(step, task, agent, agent.name, True, "agent", None, True, agent.name,
                       agent.role, "none")
    d: Decision = pol.evaluate(req)
    assert not d.allow and d.errors and "TypeError" in d.errors[0]
