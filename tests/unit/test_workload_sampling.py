"""Workload sampling at its edges: a given workload's per-agent views and misuse look-up, a
digest that reads every piece and every label, deviations on plans without arguments, the
pick among several substitutes or choice values, arguments of one name with different
distributions, and probabilities that hold exactly at a uniform draw of 0.

Each expectation is worked out here by hand or recounted from the workload, never taken from
an earlier output of the code."""

from __future__ import annotations

import math
from collections import Counter

from simharness import workload as workload_module
from simharness.actions import (
    Action,
    Delegation,
    ExtraAction,
    InjectedAction,
    MisuseInstance,
    SubstitutedAction,
    intern_perm,
)
from simharness.spec import ScenarioSpec
from simharness.workload import build_workload
from tests.conftest import make_spec, rich_spec
from tests.handbuilt import CRM_READ, CRM_WRITE, DOCS_READ, SQL_READ, act, task, workload

DOCS_WRITE = intern_perm("docs", "write", "wiki")


def binomial_ok(k: int, n: int, p: float, z: float = 5.0) -> bool:
    """k successes in n trials is within z standard deviations of n p."""
    return abs(k - n * p) <= z * math.sqrt(n * p * (1 - p)) + 1


def tool_steps(wl):
    """(task, step) for every tool step of every task, sub-tasks included."""
    for t in wl.iter_tasks():
        for s in t.steps:
            if not isinstance(s, Delegation):
                yield t, s


def edited(spec: ScenarioSpec, edit) -> ScenarioSpec:
    """The spec with `edit` applied to its data (a dict, as in a scenario file)."""
    data = spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    edit(data)
    return ScenarioSpec.model_validate(data)


class _Fixed:
    """A stand-in for rng.BlockSampler whose every draw is `value` (set on the class)."""

    value = 0.0

    def __init__(self, dist, rng, block=4096):
        self.next = lambda: self.value


def every_draw(monkeypatch, value: float) -> None:
    """Make every sampled draw of the workload (timings, risks, uniforms) equal `value`."""
    fixed = type("Fixed", (_Fixed,), {"value": value})
    monkeypatch.setattr(workload_module, "BlockSampler", fixed)


# --------------------------------------------------------------------- given workloads


def test_a_given_workload_lists_its_agents_in_first_appearance_order_and_their_tasks():
    """A given workload (tasks set by hand): working_agents is the agents with tasks in the
    order their first tasks appear (agent 3 before agent 0 here), agent_tasks(i) is exactly
    agent i's tasks in order, and an agent without tasks has an empty, iterable list."""
    spec = make_spec()  # six agents
    t0 = task(0, 3, [act(CRM_READ)], arrival=5.0)
    t1 = task(1, 0, [act(CRM_READ)], arrival=1.0)
    t2 = task(2, 3, [act(CRM_WRITE)], arrival=9.0)
    wl = workload(spec, [t0, t1, t2])
    assert wl.working_agents() == [3, 0]
    assert list(wl.agent_tasks(3)) == [t0, t2]
    assert list(wl.agent_tasks(0)) == [t1]
    for idle in (1, 2, 4, 5):
        assert list(wl.agent_tasks(idle)) == []


def test_a_materialised_workload_lists_the_agents_whose_tasks_it_holds():
    """Once `tasks` is read (materialised), working_agents is a recount of the held tasks:
    each agent with a task, in first-appearance order (agents in index order, since tasks are
    numbered agents first)."""
    wl = build_workload(make_spec(horizon="4h"), 0)
    held = wl.tasks
    expect: list[int] = []
    for t in held:
        if t.agent not in expect:
            expect.append(t.agent)
    assert len(expect) == 6 and wl.working_agents() == expect


def test_a_given_workloads_misuse_of_a_task_is_its_instances_in_order():
    """A given workload with a misuse list: misuse_of(task) is exactly the instances naming
    that task, in list order, and nothing for a task none names."""
    spec = make_spec()
    t0 = task(0, 0, [act(CRM_READ)])
    t1 = task(1, 0, [act(CRM_READ)], arrival=1.0)
    t2 = task(2, 4, [act(SQL_READ)], arrival=2.0)
    wl = workload(spec, [t0, t1, t2])
    m_a = MisuseInstance(10, "exfiltration", 2, 4, 2.0)
    m_b = MisuseInstance(11, "goal_hijack", 0, 0, 0.0)
    m_c = MisuseInstance(12, "token_replay", 2, 4, 2.0)
    wl.misuse = [m_a, m_b, m_c]
    assert list(wl.misuse_of(t2)) == [m_a, m_c]
    assert list(wl.misuse_of(t0)) == [m_b]
    assert list(wl.misuse_of(t1)) == []


# --------------------------------------------------------------------- the digest


def test_a_digest_over_several_pieces_reads_each_piece():
    """More labels than one piece (65536) of the digest: a task of 70 000 actions, then one
    more task. Equal workloads give equal digests; changing one number in the first piece, or
    one label in the last, changes it."""
    spec = make_spec()

    def digest(think0: float = 0.0, bytes_last: int = 0) -> str:
        steps = [act(CRM_READ) for _ in range(70_000)]
        steps[0].think = think0
        last = task(1, 0, [Action(CRM_WRITE, 0.0, 1.0, 0.0, bytes_last)], arrival=1.0)
        return workload(spec, [task(0, 0, steps), last]).digest()

    base = digest()
    assert digest() == base
    assert digest(think0=0.5) != base
    assert digest(bytes_last=7) != base


def test_the_digest_reads_the_permission_and_bytes_of_every_kind_of_action():
    """An extra, a substituted and an injected action: two workloads that differ only in such
    an action's permission, or only in its bytes out, have different digests."""
    spec = make_spec()

    def make(cls, perm, bytes_out):
        if cls is InjectedAction:
            return InjectedAction(perm, 0.0, 1.0, 0.0, bytes_out, misuse_id=0, kind="x",
                                  goal=True)
        return cls(perm, 0.0, 1.0, 0.0, bytes_out)

    for cls in (ExtraAction, SubstitutedAction, InjectedAction):
        def digest(perm, bytes_out, cls=cls):
            steps = [act(CRM_READ), make(cls, perm, bytes_out)]
            t = task(0, 0, steps)
            t.scope = t.declared = frozenset({CRM_READ})  # the plan, whatever the action
            return workload(spec, [t]).digest()

        base = digest(DOCS_READ, 100)
        assert digest(DOCS_READ, 100) == base, cls.__name__
        assert digest(SQL_READ, 100) != base, cls.__name__
        assert digest(DOCS_READ, 101) != base, cls.__name__


# --------------------------------------------------------------------- deviations


def test_plans_without_arguments_deviate_too():
    """MINI's answer_ticket and reconcile are tool steps without arguments (the sampler's
    short path): at an extra-action rate of 1 every planned tool step of every task, these
    included, has an extra action right before it, off the plan and in the agent's role."""
    wl = build_workload(make_spec(horizon="4h", behaviour={"deviation": {"extra": 1.0}}), 0)
    types = Counter()
    for t in wl.iter_tasks():
        types[t.type] += 1
        role = wl.agents[t.agent].role
        prev = None
        for s in t.steps:
            if type(s) is Action:
                assert type(prev) is ExtraAction, (t.type, t.id)
                assert prev.perm in role and prev.perm not in t.scope
            prev = s
    assert types["answer_ticket"] > 20 and types["reconcile"] > 5


def test_a_substitute_is_drawn_evenly_among_all_alternatives():
    """At a substitution rate of 1, a planned step is replaced by each of the role's other
    permissions for its action with equal frequency, the last of them included. Hand-worked
    for support's crm read (two alternatives: docs read and sql read) and checked for every
    planned permission against a recount of the role."""
    spec = make_spec(horizon="24h", behaviour={"deviation": {"substitute": 1.0}})
    wl = build_workload(spec, 0)
    plain = build_workload(make_spec(horizon="24h"), 0)
    seen: dict = {}
    for (t, s), (_, s0) in zip(tool_steps(wl), tool_steps(plain), strict=True):
        role = wl.agents[t.agent].role
        others = sorted(p for p in role if p[1] == s0.perm[1] and p != s0.perm)
        if not others:
            assert type(s) is Action and s.perm == s0.perm
            continue
        assert type(s) is SubstitutedAction
        seen.setdefault((wl.agents[t.agent].archetype, s0.perm, tuple(others)),
                        Counter())[s.perm] += 1
    support_crm = seen[("support", CRM_READ, (DOCS_READ, SQL_READ))]
    assert sum(support_crm.values()) > 200 and set(support_crm) == {DOCS_READ, SQL_READ}
    assert ("support", CRM_WRITE, (DOCS_WRITE,)) in seen
    for (_, _, others), picks in seen.items():
        n = sum(picks.values())
        assert set(picks) <= set(others)
        for p in others:
            assert binomial_ok(picks[p], n, 1 / len(others)), (p, picks)


def test_an_extra_action_rate_of_zero_never_fires_even_on_a_draw_of_zero(monkeypatch):
    """A probability p fires on a uniform u in [0, 1) when u < p: rate 0 never, even when the
    uniform is exactly 0.0 (numpy's uniform can return it). Every draw set to 0.0, extra 0 and
    substitute 1: every planned step with an alternative is substituted, and no extra action
    appears. The same with every draw just below 1 and extra 1: an extra before every step."""
    every_draw(monkeypatch, 0.0)
    spec = make_spec(horizon="4h", behaviour={"deviation": {"extra": 0.0, "substitute": 1.0}})
    steps = [s for _, s in tool_steps(build_workload(spec, 0))]
    assert len(steps) > 50
    assert not any(type(s) is ExtraAction for s in steps)
    assert any(type(s) is SubstitutedAction for s in steps)
    every_draw(monkeypatch, math.nextafter(1.0, 0.0))
    spec = make_spec(horizon="4h", behaviour={"deviation": {"extra": 1.0}})
    wl = build_workload(spec, 0)
    for t in wl.iter_tasks():
        tools = [s for s in t.steps if not isinstance(s, Delegation)]
        assert all(type(a) is ExtraAction for a, b in zip(tools, tools[1:], strict=False)
                   if type(b) is Action)
        assert type(tools[0]) is ExtraAction


# --------------------------------------------------------------------- arguments


def test_a_known_rate_of_zero_never_declares_even_on_a_draw_of_zero(monkeypatch):
    """A value is declared when the argument's uniform u < known: known 0 never, even when the
    uniform is exactly 0.0; known 1 always, even at the largest uniform below 1."""

    def replies(known: float, value: float):
        every_draw(monkeypatch, value)

        def edit(data):  # support answers tickets only (a draw near 1 picks the last type)
            data["agents"][0]["tasks"] = {"answer_ticket": 1}
            data["tasks"]["answer_ticket"]["steps"][-1]["args"] = {"recipient": {"known": known}}

        spec = edited(rich_spec(horizon="4h"), edit)
        wl = build_workload(spec, 0)
        return [(t.id, s.args) for t, s in tool_steps(wl)
                if s.args is not None and "recipient" in s.args.values]

    never = replies(0.0, 0.0)
    assert len(never) > 5
    for tid, args in never:
        assert args.unknown == {"recipient"}
        assert args.values["recipient"] == f"recipient:t{tid}:found"
    always = replies(1.0, math.nextafter(1.0, 0.0))
    assert len(always) > 5
    for tid, args in always:
        assert args.unknown == frozenset() and args.values["recipient"] == f"recipient:t{tid}"


def test_a_choice_draws_every_value_by_its_weight():
    """A choice of three values weighted 1:1:2 gives each about a quarter, a quarter and a
    half of the time (the third included), and a choice of one value always gives it."""

    def edit(data):
        data["tasks"]["reconcile"]["steps"][0]["args"] = {
            "pick": {"choice": {"a": 1, "b": 1, "c": 2}}, "only": {"choice": {"z": 5}}}

    wl = build_workload(edited(make_spec(horizon="200h"), edit), 0)
    vals = [s.args.values for _, s in tool_steps(wl)
            if s.args is not None and "pick" in s.args.values]
    n = len(vals)
    assert n > 500 and all(v["only"] == "z" for v in vals)
    picks = Counter(v["pick"] for v in vals)
    assert set(picks) == {"a", "b", "c"}
    assert binomial_ok(picks["a"], n, 0.25) and binomial_ok(picks["b"], n, 0.25)
    assert binomial_ok(picks["c"], n, 0.5)


def test_arguments_of_one_name_on_different_steps_keep_their_own_distributions():
    """An `amount` on reconcile's read, uniform on [1000, 1001], and another `amount` on its
    write, uniform on [0, 1]: each step's values stay in its own range (the two are not one
    stream because they share a name)."""

    def edit(data):
        steps = data["tasks"]["reconcile"]["steps"]
        steps[0]["args"] = {"amount": {"dist": "uniform", "low": 1000, "high": 1001}}
        steps[1]["args"] = {"amount": {"dist": "uniform", "low": 0, "high": 1}}

    wl = build_workload(edited(make_spec(horizon="8h"), edit), 0)
    rows = [(s.perm[1], s.args.values["amount"]) for _, s in tool_steps(wl)
            if s.args is not None and "amount" in s.args.values]
    reads = [v for a, v in rows if a == "read"]
    writes = [v for a, v in rows if a == "write"]
    assert len(reads) >= 5 and len(writes) == len(reads)
    assert all(1000 <= v <= 1001 for v in reads) and all(0 <= v <= 1 for v in writes)


def test_misuse_given_to_a_sampled_workload_is_the_misuse_it_reports():
    """Setting `misuse` on a sampled workload holds its tasks and reports the given instances
    (before, misuse_of kept deriving them from the tasks and ignored what was set)."""
    from simharness.actions import MisuseInstance
    from simharness.loader import load_scenario
    from simharness.workload import build_workload

    wl = build_workload(load_scenario("baseline", overrides=["horizon=1h"]), 0)
    top = wl.tasks[3]
    mine = MisuseInstance(99, "exfiltration", top.id, top.agent, top.arrival)
    wl.misuse = [mine]
    assert wl.misuse == [mine] and list(wl.misuse_of(top)) == [mine]
    assert all(not wl.misuse_of(t) for t in wl.tasks if t is not top)


def test_the_plan_only_fast_path_samples_what_the_general_path_does(monkeypatch):
    """Tasks of tool steps without arguments take a short cut in `_task`; with the short cut
    switched off (every plan marked not simple) the workload is the same, draw for draw."""
    from simharness import workload as wmod
    from simharness.loader import load_scenario

    # plan-following (no deviations), so the short cut is taken wherever a plan allows it
    spec = load_scenario("tests/data/baseline_plan_following.yaml", overrides=["horizon=3h"])
    fast = wmod.build_workload(spec, 0).digest()
    plan = wmod.WorkloadBuilder._plan
    taken = []

    def never_simple(self, ttype):
        steps, scope, simple = plan(self, ttype)
        taken.append(simple)
        return steps, scope, False

    monkeypatch.setattr(wmod.WorkloadBuilder, "_plan", never_simple)
    assert wmod.build_workload(spec, 0).digest() == fast
    assert any(taken)  # the short cut applied to some tasks before it was switched off
