"""Control mechanisms no other test pins (survivors of the controls' uniform mutation sample):
plug-in loading, the registry's messages, params validation through the loader's `explain`,
what a task-start hook is told, the approval gate on unweighed permissions, deviations inside
a layered stack, the measured PDP service time and the PDP station's parameters.

Every expected value is worked out by hand (a scripted clock, a recording plug-in, an exact
message), never taken from another run of the code."""

from __future__ import annotations

import math

import pytest

from simharness.actions import Action, Delegation, intern_perm
from simharness.controls import base
from simharness.controls.base import (
    Control,
    Decision,
    Ledger,
    Station,
    World,
    make,
    params_problems,
)
from simharness.controls.per_action_policy import CALIBRATION_REQUESTS, PolicyParams
from simharness.engine import simulate
from simharness.policy import engines
from simharness.testing import request_for
from simharness.workload import build_workload
from tests.conftest import make_spec
from tests.handbuilt import (
    BILLING,
    CRM_READ,
    CRM_WRITE,
    DOCS_READ,
    SQL_READ,
    SQL_WRITE,
    SUPPORT,
    task,
    tiny_spec,
    workload,
)


class Plugin(Control):
    """A minimal plug-in control model that allows everything."""

    model = "control_mechanisms_plugin"

    def decide(self, req):
        return Decision(True, ("ok",))


class FakeEntryPoint:
    """An installed entry point: `load` returns the class, or raises what it is given."""

    def __init__(self, name: str, target):
        self.name = name
        self._target = target

    def load(self):
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


@pytest.fixture
def registry(monkeypatch) -> dict:
    """A private control registry (the built-ins only) and no installed entry points."""
    reg = dict(base._REGISTRY)
    monkeypatch.setattr(base, "_REGISTRY", reg)
    monkeypatch.setattr(base, "entry_points", lambda group: [])
    return reg


# --------------------------------------------------------------------------- registry


def test_a_broken_plugin_does_not_stop_the_ones_after_it(monkeypatch, registry):
    """An entry point that fails to load is skipped and the following entry points still load."""
    asked: list[str] = []

    def fake_entry_points(group):
        asked.append(group)
        return [FakeEntryPoint("broken_plugin", ImportError("no module named 'broken'")),
                FakeEntryPoint("good_plugin", Plugin)]

    monkeypatch.setattr(base, "entry_points", fake_entry_points)
    models = base.registered()
    assert asked == ["simharness.controls"]
    assert "broken_plugin" not in models
    assert models["good_plugin"] is Plugin
    assert base.get_model("good_plugin") is Plugin


def test_unknown_model_without_a_close_match_lists_the_known_models(monkeypatch):
    """An unknown model name unlike any known one is refused with the sorted list of known models."""
    monkeypatch.setattr(base, "_REGISTRY", {"zeta_gate": Plugin, "alpha_gate": Plugin})
    monkeypatch.setattr(base, "entry_points", lambda group: [])
    with pytest.raises(KeyError) as info:
        base.get_model("quorum")
    assert info.value.args == ("unknown control model 'quorum'; known: alpha_gate, zeta_gate",)


# --------------------------------------------------------------------------- params_problems


def test_params_problems_of_an_unknown_model_name_the_model_with_a_hint():
    """An unknown model is one problem located at `model`, worded with a did-you-mean."""
    assert params_problems("static_iamm", {}, make_spec()) == [
        (("model",), "unknown control model 'static_iamm' (did you mean 'static_iam'?)")]


def test_params_problems_hand_the_validation_error_to_explain():
    """Bad params go to `explain(error, Params class, params)`; its pairs come back under params."""
    calls: list[tuple] = []

    def explain(error, params_cls, params):
        calls.append((type(error).__name__, params_cls, params))
        return [(("pdp", "on_timeout"), "explained"), ((), "whole")]

    bad = {"pdp": {"on_timeout": "drop"}}
    problems = params_problems("per_action_policy", bad, make_spec(), explain=explain)
    assert problems == [(("params", "pdp", "on_timeout"), "explained"), (("params",), "whole")]
    assert len(calls) == 1
    assert calls[0][0] == "ValidationError"
    assert calls[0][1] is PolicyParams
    assert calls[0][2] is bad


def test_params_problems_with_the_loader_explain_word_a_bad_value():
    """With the loader's explain, a bad pdp.on_timeout is reported with the values it may take."""
    from simharness.loader import _validation_problems

    problems = params_problems("per_action_policy", {"pdp": {"on_timeout": "drop"}},
                               make_spec(), explain=_validation_problems)
    assert problems == [(("params", "pdp", "on_timeout"),
                         "unknown value 'drop'; expected 'keep_serving' or 'abandon'")]


def test_params_problems_build_a_plugin_with_a_string_name(registry):
    """params_problems builds the control with a str name (as its constructor is typed)."""
    seen: list = []

    class Named(Plugin):
        model = "control_mechanisms_named"

        def __init__(self, name, params, world):
            seen.append(name)
            super().__init__(name.strip(), params, world)

    registry[Named.model] = Named
    assert params_problems(Named.model, {}, make_spec()) == []
    assert len(seen) == 1 and isinstance(seen[0], str)


# --------------------------------------------------------------------------- task context


class DepthSpy(Control):
    """A plug-in that records (task id, ctx.chain_depth) at every task start."""

    model = "control_mechanisms_depth_spy"

    def __init__(self, world):
        super().__init__("depth_spy", {}, world)
        self.starts: list[tuple[int, int]] = []

    def on_task_start(self, ctx, ledger, now):
        self.starts.append((ctx.task.id, ctx.chain_depth))
        return None

    def decide(self, req):
        return Decision(True, ("ok",))


def test_task_start_context_carries_the_chain_depth():
    """on_task_start sees chain_depth 0 for top-level tasks and 1 for a delegated sub-task."""
    spec = tiny_spec()
    sub = task(2, BILLING, [Action(SQL_WRITE, 0.0, 1.0, 0.0)], type_="issue_refund", depth=1)
    tasks = [task(1, SUPPORT, [Action(CRM_READ, 0.0, 1.0, 0.0), Delegation(1.0, sub)],
                  type_="refund"),
             task(3, BILLING, [Action(SQL_READ, 0.0, 1.0, 0.0)], arrival=100.0, type_="reconcile")]
    spy = DepthSpy(World(spec))
    simulate(workload(spec, tasks), spy, probe=False)
    assert spy.starts == [(1, 0), (2, 1), (3, 0)]


# --------------------------------------------------------------------------- human_approval


def test_approval_does_not_escalate_a_permission_the_world_does_not_weigh():
    """A permission outside the world's weights weighs 0: below weight_at_least, auto-approved."""
    world = World(make_spec())
    gate = make("gate", "human_approval",
                {"risk_above": None, "unknown_args": False, "weight_at_least": 0.5}, world)
    unweighed = intern_perm("crm_api", "admin", "crm")  # crm_api has no admin action
    assert unweighed not in world.weight
    assert gate.decide(request_for(world, unweighed, "support", "support-0")) == Decision(
        True, ("auto-approved",))
    # docs:read:wiki weighs internal (1) x read (1) = 1 >= 0.5: escalated
    assert gate.decide(request_for(world, DOCS_READ, "support", "support-0")) == Decision(
        False, ("needs-approval",), escalate=True)


# --------------------------------------------------------------------------- layered


def test_layered_passes_the_flagged_identity_to_its_members():
    """A deviation flagged on a layered stack quarantines that identity in a member that
    revokes on deviation, which then denies it."""
    world = World(make_spec())
    stack = make("stack", "layered",
                 {"members": [{"model": "static_iam", "params": {"revoke_on_deviation": True}}]},
                 world)
    ledger = Ledger(world.weight)
    cred = stack.credential_for("support-0", "support", True, ledger, 0.0)
    req = request_for(world, CRM_READ, "support", "support-0", time=20.0, credential=cred)
    assert stack.decide(req) == Decision(True, ("static_iam:in-role",))
    assert stack.on_deviation("support-0", ledger, 10.0) == 0  # the stack itself revokes nothing
    member = stack.members[0]
    assert member.quarantined == {"support-0": 10.0 + 3600.0}
    assert [c.revoked for c in stack._private.credentials] == [10.0]
    assert stack.decide(req) == Decision(False, ("static_iam:identity-quarantined",))


# --------------------------------------------------------------------------- per_action_policy


def test_measured_service_time_is_the_scripted_evaluation_time_in_seconds(monkeypatch):
    """With a scripted clock (request i takes 1000*(i%3+1) ns), the PDP samples those
    durations in seconds and reports them in microseconds."""
    state = {"calls": 0, "now": 0}

    def clock():
        # time_decisions reads the clock twice per evaluation: before and after
        c = state["calls"]
        state["calls"] += 1
        if c % 2:
            i = (c // 2) % CALIBRATION_REQUESTS
            state["now"] += 1000 * (i % 3 + 1)
        return state["now"]

    class ScriptedTime:
        perf_counter_ns = staticmethod(clock)

    monkeypatch.setattr(engines, "time", ScriptedTime)
    c = make("p", "per_action_policy", {"pdp": {"service_time": "measured"}},
             World(make_spec()))
    assert state["calls"] == 2 * 5 * CALIBRATION_REQUESTS
    expected = [(1e-6, 2e-6, 3e-6)[i % 3] for i in range(CALIBRATION_REQUESTS)]
    assert c.service_time.samples == expected
    assert c.path()[0].service.samples == expected
    assert c.measured_service_us == {"p50": 2.0, "p99": 3.0, "mean": 2.0, "n": 300}


def test_pdp_station_carries_its_params():
    """The per_action_policy PDP station is built from pdp params, on_timeout included."""
    world = World(make_spec())
    c = make("p", "per_action_policy",
             {"pdp": {"servers": 2, "rtt": 0.003, "service_time": 0.002, "timeout": 0.5,
                      "fail_mode": "open", "cache": {"ttl": 30, "key": ["identity", "tool"]},
                      "max_queue": 7, "on_timeout": "abandon"}}, world)
    [station] = c.path()
    assert isinstance(station, Station)
    assert (station.name, station.servers, station.timeout, station.fail_mode, station.cache_ttl,
            station.cache_key, station.max_queue, station.on_timeout) == (
        "pdp", 2, 0.5, "open", 30.0, ("identity", "tool"), 7, "abandon")
    [default] = make("q", "per_action_policy", {}, world).path()
    assert default.on_timeout == "keep_serving" and default.max_queue == math.inf


# --------------------------------------------------------------------------- task_policy


def test_task_policy_keeps_its_name():
    """A task_policy control is known by the name it was built with."""
    assert make("per_task_rules", "task_policy", {}, World(make_spec())).name == "per_task_rules"


# --------------------------------------------------------------------------- third sample

MEASURED_TASK_POLICY = ("pdp.service_time: measured times a policy engine; task_policy "
                        "evaluates its generated policy natively (give a distribution)")


def test_task_policy_refuses_a_measured_pdp_service_time():
    """task_policy evaluated at a PDP refuses service_time measured with its exact message."""
    world = World(make_spec())
    with pytest.raises(ValueError) as info:
        make("tp", "task_policy", {"evaluate": "pdp", "pdp": {"service_time": "measured"}},
             world)
    assert str(info.value) == MEASURED_TASK_POLICY
    # Evaluated locally, the PDP's params are not used, so nothing is refused.
    make("tp", "task_policy", {"evaluate": "local", "pdp": {"service_time": "measured"}}, world)


def test_params_problems_report_a_constructor_value_error_with_its_message():
    """A ValueError raised while building the control is one problem at `params`, worded as
    the error."""
    spec = make_spec()
    assert params_problems("task_policy", {"destinations": ["nowhere", "elsewhere"]}, spec) == [
        (("params",), "destinations: unknown resource(s) elsewhere, nowhere")]
    assert params_problems("task_policy", {"evaluate": "pdp",
                                           "pdp": {"service_time": "measured"}}, spec) == [
        (("params",), MEASURED_TASK_POLICY)]


def _task_context(world: World, tid: int, steps: list, declared_args: dict):
    """The TaskContext of a support-0 task declaring its steps' permissions and these args."""
    from simharness.controls.base import TaskContext

    agent = build_workload(world.spec, 0).agents[SUPPORT]
    t = task(tid, SUPPORT, steps)
    t.declared_args = declared_args
    return TaskContext(t, agent, "support-0", None, 0, True)


HTTP_SEND = intern_perm("http", "send", "outbound_mail")


def test_a_task_policy_is_generated_for_its_task():
    """The generated policy names the task it was generated for, as do its rendered rules."""
    from simharness.policy.generate import render_task_policy
    from tests.conftest import rich_spec

    world = World(rich_spec())
    tp = make("tp", "task_policy", {}, world)
    ctx = _task_context(world, 7, [Action(CRM_READ, 0.0, 1.0, 0.0)], {})
    policy = tp.generate(ctx)
    assert policy.task_id == 7
    assert "context.task_id == 7 && " in render_task_policy(policy, "cedar")


def test_task_policy_constrains_arguments_only_on_the_actions_it_names():
    """With constrain_actions [send], an undeclared argument value is denied on a send and
    ignored on a write; a declared one is allowed on a send."""
    from tests.conftest import rich_spec

    world = World(rich_spec())
    tp = make("tp", "task_policy", {"constrain_actions": ["send"]}, world)
    steps = [Action(HTTP_SEND, 0.0, 1.0, 0.0), Action(CRM_WRITE, 0.0, 1.0, 0.0)]
    tp.on_task_start(_task_context(world, 3, steps, {"recipient": frozenset({"alice"})}),
                     Ledger(world.weight), 0.0)

    def ask(perm, recipient):
        return tp.decide(request_for(world, perm, "support", "support-0", task_id=3,
                                     args={"recipient": recipient}))

    assert ask(HTTP_SEND, "alice") == Decision(True, ("task-policy",))
    assert ask(HTTP_SEND, "mallory") == Decision(False, ("argument-not-declared",))
    assert ask(CRM_WRITE, "mallory") == Decision(True, ("task-policy",))


def test_an_ended_standing_credential_of_an_identity_never_quarantined_is_reissued():
    """An identity never quarantined whose standing credential ended (revoked at 0.5 s) gets a
    new one at its next request (0.6 s); a quarantined one waits for its release."""
    world = World(make_spec())
    iam = make("iam", "static_iam", {}, world)
    ledger = Ledger(world.weight)
    first = iam.credential_for("support-0", "support", True, ledger, 0.0)
    assert ledger.revoke(first, 0.5)
    second = iam.credential_for("support-0", "support", True, ledger, 0.6)
    assert second is not first
    assert (second.id, second.holder, second.issued, second.revoked) == (1, "support-0", 0.6, None)
    assert second.live(0.6) and ledger.credentials == [first, second]
    # support-1 quarantined until 0.8 s: its revoked credential stays until then.
    other = iam.credential_for("support-1", "support", True, ledger, 0.0)
    iam.quarantined["support-1"] = 0.8
    assert ledger.revoke(other, 0.5)
    assert iam.credential_for("support-1", "support", True, ledger, 0.6) is other
    assert iam.credential_for("support-1", "support", True, ledger, 0.8).issued == 0.8
