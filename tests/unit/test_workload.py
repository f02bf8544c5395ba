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
