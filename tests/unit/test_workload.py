"""Workload sampling, common random numbers and the shape of every misuse kind."""

from __future__ import annotations

import pytest

from simharness.actions import (
    IMPERSONATE,
    PASSTHROUGH,
    REPLAY,
    STOLEN,
    Action,
    Delegation,
)
from simharness.controls.base import World, make
from simharness.engine import simulate
from simharness.misuse_catalogue import CATALOGUE, MISUSE_KINDS
from simharness.workload import build_workload
from tests.conftest import make_spec, rich_spec


def injected(task):
    """Every injected action of a task tree, with the sub-task it sits in."""
    out = []
    stack = [task]
    while stack:
        t = stack.pop()
        for s in t.steps:
            if isinstance(s, Delegation):
                stack.append(s.task)
            elif s.misuse_id >= 0:
                out.append((t, s))
        out += [(t, a) for a in (*t.attacker, *t.replay)]
    return out


def misused(kind: str):
    spec = rich_spec(misuse={"rate": 1.0, "kinds": {kind: 1}})
    wl = build_workload(spec, 0)
    tasks = [t for t in wl.tasks if t.kind == kind]
    assert tasks, f"no task took {kind}"
    return spec, wl, tasks


def test_same_digest_for_every_control_and_different_across_replications(mini):
    spec = make_spec(misuse={"rate": 0.2})
    wl = build_workload(spec, 0)
    digest = wl.digest()
    for entry in spec.controls:
        simulate(wl, make(entry.name, entry.model, entry.params, World(spec)))
        assert wl.digest() == digest  # running a control never changes the workload
    assert build_workload(spec, 0).digest() == digest
    assert build_workload(spec, 1).digest() != digest


def test_misuse_rate_change_keeps_arrivals():
    a = build_workload(make_spec(misuse={"rate": 0.0}), 0)
    b = build_workload(make_spec(misuse={"rate": 0.5}), 0)
    assert [(t.agent, t.arrival, t.type) for t in a.tasks] == [(t.agent, t.arrival, t.type) for t in b.tasks]


def test_every_kind_has_standards_ids():
    assert set(CATALOGUE) == set(MISUSE_KINDS) and len(MISUSE_KINDS) == 15
    for k in CATALOGUE.values():
        assert k.asi or k.nhi or k.atlas


@pytest.mark.parametrize("kind", MISUSE_KINDS)
def test_every_injected_action_is_labelled(kind):
    _, wl, tasks = misused(kind)
    for t in tasks:
        acts = injected(t)
        assert acts, f"{kind}: nothing injected"
        assert all(a.kind == kind and a.misuse_id == t.misuse_id for _, a in acts)
        assert any(a.goal for _, a in acts)


def test_exfiltration_reads_most_sensitive_then_sends_out():
    spec, wl, tasks = misused("exfiltration")
    for t in tasks:
        acts = [a for _, a in injected(t)]
        read, send = acts
        role = wl.agents[t.agent].role
        reads = [p for p in role if p[1] == "read"]
        sens = spec.weights.sensitivity
        top = max(sens[wl.sensitivity[p[2]]] for p in reads)
        assert read.perm[1] == "read" and read.perm in role and not read.goal
        assert sens[wl.sensitivity[read.perm[2]]] == top
        dest = spec.resource(send.perm[2])
        assert send.perm[1] == "send" and send.goal and dest.external and not dest.approved
        assert send.bytes_out >= 1_000_000 and send.data_sensitivity == wl.sensitivity[read.perm[2]]


def test_out_of_scope_resource_keeps_tool_and_action():
    spec, wl, tasks = misused("out_of_scope_resource")
    sens = spec.weights.sensitivity
    for t in tasks:
        i = next(i for i, s in enumerate(t.steps) if isinstance(s, Action) and s.misuse_id >= 0)
        planned, bad = t.steps[i - 1].perm, t.steps[i].perm
        assert bad[:2] == planned[:2] and bad[2] != planned[2]
        assert sens[wl.sensitivity[bad[2]]] >= sens[wl.sensitivity[planned[2]]]


def test_unneeded_capability_uses_an_unplanned_tool_action_pair():
    _, wl, tasks = misused("unneeded_capability")
    for t in tasks:
        (_, a), = injected(t)
        assert a.perm in wl.agents[t.agent].role
        assert (a.perm[0], a.perm[1]) not in {(p[0], p[1]) for p in t.scope}


def test_goal_hijack_is_in_role_and_off_plan():
    spec, wl, tasks = misused("goal_hijack")
    for t in tasks:
        acts = injected(t)
        assert len(acts) == spec.misuse.params.hijack_actions
        assert all(a.perm in wl.agents[t.agent].role and a.perm not in t.scope for _, a in acts)


def test_destructive_action_targets_a_planned_resource():
    _, wl, tasks = misused("destructive_action")
    for t in tasks:
        (_, a), = injected(t)
        assert a.perm[1] in ("delete", "admin") and a.perm[2] in {p[2] for p in t.scope}


def test_credential_theft_is_an_outside_attacker_after_a_delay():
    spec, _, tasks = misused("credential_theft")
    for t in tasks:
        assert t.leak_step >= 0 and len(t.attacker) == spec.misuse.params.theft_uses
        assert all(a.present == STOLEN and a.think >= spec.misuse.params.theft_delay for a in t.attacker)


def test_token_replay_happens_after_the_task():
    spec, _, tasks = misused("token_replay")
    for t in tasks:
        assert t.replay and all(a.present == REPLAY and a.perm in t.scope for a in t.replay)
        assert all(a.think >= spec.misuse.params.replay_delay for a in t.replay)


def test_delegation_kinds_act_inside_the_sub_task():
    for kind in ("token_passthrough", "confused_deputy", "unscoped_delegation"):
        _, wl, tasks = misused(kind)
        for t in tasks:
            (where, a), = injected(t)
            assert where is not t and where.depth == 1, kind
            if kind == "token_passthrough":
                assert a.present == PASSTHROUGH
            if kind == "confused_deputy":
                origin = wl.agents[t.agent].role
                assert a.perm in wl.agents[where.agent].role and a.perm not in origin
            if kind == "unscoped_delegation":
                assert a.perm not in where.scope


def test_impersonation_presents_another_archetype():
    _, wl, tasks = misused("impersonation")
    for t in tasks:
        (_, a), = injected(t)
        assert a.present == IMPERSONATE
        assert wl.agents[a.as_agent].archetype != wl.agents[t.agent].archetype


def test_stale_authorization_reuses_a_revoked_planned_permission():
    _, _, tasks = misused("stale_authorization")
    for t in tasks:
        (_, a), = injected(t)
        assert a.perm in t.scope and not a.entitled


def test_resource_overload_is_a_burst_of_in_scope_calls():
    spec, _, tasks = misused("resource_overload")
    p = spec.misuse.params
    for t in tasks:
        acts = [a for _, a in injected(t)]
        assert len(acts) == p.overload_calls and len({a.perm for a in acts}) == 1
        assert acts[0].perm in t.scope and all(a.think == p.overload_interval for a in acts)
        assert sum(a.goal for a in acts) == p.overload_calls - p.overload_setup


def test_the_digest_reads_what_an_injected_action_is():
    """Two workloads that differ only in an injected action's labels (its misuse kind here)
    have different digests: the digest proves controls saw the same misuse, not only the same
    permissions and times."""
    spec = make_spec(misuse={"rate": 0.5, "kinds": {"exfiltration": 1}})
    wl = build_workload(spec, 0)
    before = wl.digest()
    injected = next(s for t in wl.tasks for s in t.steps if getattr(s, "misuse_id", -1) >= 0)
    injected.kind = "something_else"
    assert wl.digest() != before


def test_a_root_seed_replaces_the_scenarios_seed():
    spec = make_spec()
    other = build_workload(spec, 0, root_seed=spec.seed + 1)
    assert other.digest() != build_workload(spec, 0).digest()
    assert other.digest() == build_workload(spec.model_copy(update={"seed": spec.seed + 1}),
                                            0).digest()


def test_distributed_argument_values_are_drawn_afresh_for_each_step():
    """An amount drawn from a distribution (rich_spec's refund amount) differs from task to
    task: one stream per argument, continued, not restarted."""
    wl = build_workload(rich_spec(horizon="8h"), 0)
    amounts = [s.args.values["amount"] for t in wl.iter_tasks() for s in t.steps
               if getattr(s, "args", None) is not None and "amount" in s.args.values]
    assert len(amounts) >= 5 and len(set(amounts)) == len(amounts)


def test_a_plan_scope_ignores_recall_and_extra():
    """declared_scope source plan: every task declares exactly its plan, whatever recall and
    extra say (they are read only for a predicted scope)."""
    spec = make_spec(declared_scope={"source": "plan", "recall": 0.3, "extra": 0.7})
    wl = build_workload(spec, 0)
    assert all(t.declared == t.scope for t in wl.iter_tasks())


def test_tampering_sets_the_attackers_value_and_keeps_the_rest_of_the_provenance():
    """_tamper: the named argument gets the attacker's value (a number scaled by the factor,
    text replaced), becomes unknown, gains the injection's way in as a source, and the other
    values, unknowns, sources and carried data stay (hand-worked)."""
    from simharness.actions import Args
    from simharness.misuse import ATTACKER_VALUE, _tamper

    args = Args({"amount": 10.0, "to": "bob"}, frozenset({"to"}), frozenset({"crm"}),
                frozenset({"wiki"}))
    out = _tamper(args, "amount", 3.0, "inbox")
    assert out.values == {"amount": 30.0, "to": "bob"}
    assert (out.unknown, out.derived, out.carries) == ({"to", "amount"}, {"crm", "inbox"},
                                                       {"wiki"})
    text = _tamper(args, "to", 3.0, None)  # nothing read before: no new source
    assert text.values == {"amount": 10.0, "to": ATTACKER_VALUE}
    assert (text.unknown, text.derived, text.carries) == ({"to"}, {"crm"}, {"wiki"})


def test_the_injections_way_in_is_the_last_untrusted_read_else_the_last_read():
    """_vector on hand-built tasks: the last untrusted resource read before the step; with only
    trusted reads, the last read; with no read, None."""
    from types import SimpleNamespace as NS

    from simharness.misuse import _vector

    def injection(*reads, untrusted=("web",)):
        steps = [NS(perm=("t", "read", r)) for r in reads] + [NS(perm=("t", "send", "mail"))]
        resources = [NS(name=r, untrusted=r in untrusted) for r in ("web", "crm", "wiki")]
        return NS(b=NS(spec=NS(resources=resources)), task=NS(steps=steps)), len(reads)

    assert _vector(*injection("crm", "web", "wiki")) == "web"
    assert _vector(*injection("crm", "wiki")) == "wiki"
    assert _vector(*injection()) is None


def test_a_scripted_task_is_a_top_level_task_of_its_type_for_its_agent():
    """WorkloadBuilder.task (scripted workloads, e.g. the injection bound): depth 0, the type,
    agent and arrival asked for, and the type's planned steps."""
    from simharness.workload import WorkloadBuilder

    spec = make_spec()
    b = WorkloadBuilder(spec, 0)
    agent = next(a.index for a in b.agents if a.archetype == "support")
    task = b.task("answer_ticket", agent, 42.0)
    assert (task.type, task.agent, task.arrival, task.depth) == ("answer_ticket", agent, 42.0, 0)
    planned = [(s.tool, s.action, s.resource) for s in spec.tasks["answer_ticket"].steps]
    assert [s.perm for s in task.steps] == planned


def test_every_sampler_of_the_builder_draws_from_its_own_stream(monkeypatch):
    """No two samplers share a random stream (shared streams would correlate, e.g., the
    deviation decisions with the deviations' risk scores): the stream keys the builder asks
    the seed tree for are all different."""
    from simharness import workload

    asked = []
    real = workload.seedtree.stream

    def spy(root, replication, role, *sub):
        asked.append((role, *sub))
        return real(root, replication, role, *sub)

    monkeypatch.setattr(workload.seedtree, "stream", spy)
    spec = rich_spec()
    builder = workload.WorkloadBuilder(spec, 0)
    wl = builder.build()  # every agent's arrival stream
    for key in ((), (workload.AGENT_KEY, 0), (workload.AGENT_KEY, 1)):  # scripted, two agents
        streams = workload._Streams(spec, 1, 0, key, 64)
        for kind in workload._Streams.KINDS:
            getattr(streams, kind)  # made on first use
        streams.arg_sampler("a", object())
        streams.arg_sampler("b", object())
    assert len(asked) >= len(wl.agents) + 3 * 15 and len(set(asked)) == len(asked), asked


def test_each_distributed_argument_of_a_step_has_its_own_stream():
    """Three amounts on one step, same distribution: each drawn from its own stream, so no two
    are equal on any step (and the third builds as the first two do)."""
    spec = rich_spec(horizon="8h")
    data = spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    dist = {"dist": "lognormal", "p50": 80, "p99": 900}
    data["tasks"]["issue_refund"]["steps"][0]["args"] = {"a": dist, "b": dist, "c": dist}
    from simharness.spec import ScenarioSpec

    wl = build_workload(ScenarioSpec.model_validate(data), 0)
    rows = [s.args.values for t in wl.iter_tasks() for s in t.steps
            if getattr(s, "args", None) is not None and "c" in s.args.values]
    assert len(rows) >= 5
    assert all(len({v["a"], v["b"], v["c"]}) == 3 for v in rows)


def test_a_task_declares_the_argument_values_it_knew_and_a_step_passes_on_what_it_carries():
    """declared_args: every value of the task's planned steps that the task knew when it began
    (not found during it), by argument name; a step's `carries` reaches its Args."""
    from simharness.spec import ScenarioSpec

    data = rich_spec(horizon="24h").model_dump(mode="json", by_alias=True, exclude_unset=True)
    data["tasks"]["answer_ticket"]["steps"][-1]["carries"] = ["crm"]
    wl = build_workload(ScenarioSpec.model_validate(data), 0)
    knew = found = 0
    for t in wl.tasks:
        if t.type != "answer_ticket" or t.misuse_id >= 0:
            continue
        (reply,) = [s for s in t.steps if s.args is not None]
        assert reply.args.carries == {"crm"}
        value = reply.args.values["recipient"]
        if "recipient" in reply.args.unknown:
            found += 1
            assert dict(t.declared_args) == {}
        else:
            knew += 1
            assert dict(t.declared_args) == {"recipient": frozenset({value})}
    assert knew > 20 and found > 0


def test_each_distributed_argument_draws_from_its_own_distribution():
    """Two amounts on one step with different distributions: each keeps its own (b stays in
    its uniform range [1000, 1001], a never does)."""
    from simharness.spec import ScenarioSpec

    data = rich_spec(horizon="8h").model_dump(mode="json", by_alias=True, exclude_unset=True)
    data["tasks"]["issue_refund"]["steps"][0]["args"] = {
        "a": {"dist": "lognormal", "p50": 5, "p99": 50},
        "b": {"dist": "uniform", "low": 1000, "high": 1001}}
    wl = build_workload(ScenarioSpec.model_validate(data), 0)
    rows = [s.args.values for t in wl.iter_tasks() for s in t.steps
            if getattr(s, "args", None) is not None and "b" in s.args.values]
    assert len(rows) >= 5
    assert all(1000 <= v["b"] <= 1001 and not 1000 <= v["a"] <= 1001 for v in rows)


def test_an_argument_found_before_any_read_has_no_source():
    """An undeclared value on a task's first step (nothing read yet) comes from no resource:
    its derived sources are empty."""
    from simharness.spec import ScenarioSpec

    data = rich_spec(horizon="24h").model_dump(mode="json", by_alias=True, exclude_unset=True)
    steps = data["tasks"]["answer_ticket"]["steps"]
    steps.insert(0, steps.pop())  # the reply (recipient known 0.9) first
    wl = build_workload(ScenarioSpec.model_validate(data), 0)
    replies = [s.args for t in wl.tasks if t.type == "answer_ticket" and t.misuse_id < 0
               for s in t.steps[:1]]
    unknown = [a for a in replies if "recipient" in a.unknown]
    assert unknown and all(a.derived == frozenset() for a in unknown)


def test_each_misuse_instance_names_the_agent_of_its_task():
    wl = build_workload(make_spec(horizon="24h", misuse={"rate": 0.3, "kinds": {
        "exfiltration": 1, "goal_hijack": 1}}), 0)
    agent_of = {t.id: t.agent for t in wl.iter_tasks()}
    assert wl.misuse and all(m.agent == agent_of[m.task] for m in wl.misuse)
