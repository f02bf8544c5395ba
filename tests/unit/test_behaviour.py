"""Agents that leave their plans, controls that know only a declared scope, arguments, and misuse
that stays inside the plan (issue 13). Each mechanism is checked against a count made here from
the workload or the action log, never against the code's own summary."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from simharness.actions import Delegation, ExtraAction, SubstitutedAction
from simharness.controls.base import Control, Decision, Local, Request, World, make
from simharness.engine import A, T, simulate
from simharness.loader import data_dir, find_scenario, load_scenario
from simharness.metrics import compute, misuse_outcomes
from simharness.policy.engines import DEFAULT_POLICIES
from simharness.spec import ScenarioSpec
from simharness.units import Constant
from simharness.workload import build_workload, permission_weights
from tests.conftest import MINI, rich_spec

DATA = Path(__file__).resolve().parents[1] / "data"


def long(**changes) -> ScenarioSpec:
    """The rich mini scenario over two days: enough tasks to count rates."""
    return rich_spec(horizon="48h", **changes)


def with_behaviour(spec: ScenarioSpec, **fields) -> ScenarioSpec:
    data = spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    data.update(fields)
    return ScenarioSpec.model_validate(data)


def all_steps(wl):
    for t in wl.iter_tasks():
        for s in t.steps:
            if not isinstance(s, Delegation):
                yield t, s


def binomial_ok(k: int, n: int, p: float, z: float = 5.0) -> bool:
    """k successes in n trials is within z standard deviations of n p."""
    return abs(k - n * p) <= z * math.sqrt(n * p * (1 - p)) + 1


# --------------------------------------------------------------------------- defaults


def run_csvs(path: Path, out: Path) -> dict[str, pd.DataFrame]:
    from simharness import api

    api.run(str(path), out=str(out), quiet=True)
    return {f: pd.read_csv(out / f"{f}.csv", dtype=str, keep_default_na=False)
            for f in ("summary", "misuse")}


def test_plan_following_baseline_gives_the_recorded_bytes(tmp_path):
    """A regression pin: the baseline without behaviour, declared scope or arguments gives the
    summary and misuse tables recorded in tests/data. They were recorded when every agent got
    its own random streams (issue 20: workloads sampled per agent as the run goes), which
    changed every sampled figure once; before that they pinned the code of commit f1ea782
    through every redefinition since. Exposure and blast radius were re-recorded when the
    probe began summing spans agent by agent and a thief's terms exactly rounded (session 30:
    last-digit changes, at most 4e-15 relative; blast radius 3780449.999999992 became the
    exact 3780450). A change here means results moved: say why, then
    re-record (`python -m simharness run tests/data/baseline_plan_following.yaml`)."""
    new = run_csvs(DATA / "baseline_plan_following.yaml", tmp_path)
    for name in ("summary", "misuse"):
        old = pd.read_csv(DATA / f"baseline_plan_following.{name}.csv", dtype=str,
                          keep_default_na=False)
        assert list(new[name].columns) == list(old.columns), name
        assert new[name].equals(old), name


def test_plan_following_scenario_knows_it_and_is_plan_only(mini):
    assert mini.follows_plans
    wl = build_workload(mini, 0)
    assert all(t.declared is t.scope for t in wl.iter_tasks())
    assert all(type(s) not in (ExtraAction, SubstitutedAction) for _, s in all_steps(wl))
    spec = with_behaviour(mini, declared_scope={"source": "plan"})
    assert not spec.follows_plans


def test_every_shipped_scenario_sets_behaviour_and_declared_scope():
    for path in sorted(data_dir("scenarios").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        assert "behaviour" in raw and "declared_scope" in raw, path.name


# --------------------------------------------------------------------------- declared scope


def test_predicted_scope_keeps_recall_and_adds_extra():
    spec = with_behaviour(long(), declared_scope={"source": "predicted", "recall": 0.8,
                                                       "extra": 0.1})
    wl = build_workload(spec, 0)
    kept = planned = added = offered = 0
    for t in wl.iter_tasks():
        role = wl.agents[t.agent].role
        assert t.declared <= t.scope | role
        kept += len(t.declared & t.scope)
        planned += len(t.scope)
        added += len(t.declared - t.scope)
        offered += len(role - t.scope)
    assert planned > 500 and offered > 500
    assert binomial_ok(kept, planned, 0.8) and binomial_ok(added, offered, 0.1)


def test_higher_recall_keeps_a_superset_and_role_scope_is_the_role():
    base = rich_spec()
    lo = build_workload(with_behaviour(base, declared_scope={"source": "predicted", "recall": 0.5,
                                                             "extra": 0.1}), 0)
    hi = build_workload(with_behaviour(base, declared_scope={"source": "predicted", "recall": 0.9,
                                                             "extra": 0.1}), 0)
    pairs = list(zip(lo.iter_tasks(), hi.iter_tasks(), strict=True))
    assert all(a.declared <= b.declared for a, b in pairs)
    assert any(a.declared < b.declared for a, b in pairs)
    role = build_workload(with_behaviour(base, declared_scope={"source": "role"}), 0)
    assert all(t.declared == role.agents[t.agent].role for t in role.iter_tasks())


# --------------------------------------------------------------------------- deviations


def deviating(extra=0.0, substitute=0.0, **more) -> ScenarioSpec:
    return with_behaviour(long(), behaviour={
        "deviation": {"extra": extra, "substitute": substitute, **more}})


def test_extra_actions_are_off_plan_role_permissions_at_the_rate_asked():
    wl = build_workload(deviating(extra=0.2), 0)
    planned = extras = 0
    for t, s in all_steps(wl):
        if type(s) is ExtraAction:
            extras += 1
            assert s.perm in wl.agents[t.agent].role and s.perm not in t.scope
            assert s.source == "deviation" and s.misuse_id < 0
        else:
            planned += 1
    assert planned > 1000 and binomial_ok(extras, planned, 0.2)


def test_explore_weights_pick_actions_in_proportion():
    wl = build_workload(deviating(extra=1.0, explore={"read": 3, "write": 1}), 0)
    by_action = Counter()
    for _, s in all_steps(wl):
        if type(s) is ExtraAction:
            by_action[s.perm[1]] += 1
            # support's off-plan role has one read and one write family; billing's only reads
    assert set(by_action) <= {"read", "write"}
    # Independent count of what each task could pick, weighted 3:1.
    expect = Counter()
    for t in wl.iter_tasks():
        cands = [p for p in wl.agents[t.agent].role - t.scope if p[1] in ("read", "write")]
        w = {"read": 3, "write": 1}
        total = sum(w[p[1]] for p in cands)
        n = sum(1 for s in t.steps if type(s) is ExtraAction)
        for p in cands:
            expect[p[1]] += n * w[p[1]] / total if total else 0
    for act in ("read", "write"):
        assert abs(by_action[act] - expect[act]) <= 5 * math.sqrt(expect[act]) + 1, act


def test_substitution_keeps_the_action_and_changes_tool_or_resource():
    wl = build_workload(deviating(substitute=0.5), 0)
    plain = build_workload(deviating(), 0)
    subs = 0
    for (t, s), (_, s0) in zip(all_steps(wl), all_steps(plain), strict=True):
        assert (s.think, s.duration, s.risk) == (s0.think, s0.duration, s0.risk)
        if type(s) is SubstitutedAction:
            subs += 1
            assert s.perm[1] == s0.perm[1] and s.perm != s0.perm
            assert s.perm in wl.agents[t.agent].role
        else:
            assert s.perm == s0.perm
    assert subs > 100
    # The alternative is drawn among all of them: a planned permission with several
    # alternatives is replaced by more than one of them over the run.
    from simharness.workload import alternatives

    role = {a.archetype: a.role for a in wl.agents}
    seen: dict = {}
    for (t, s), (_, s0) in zip(all_steps(wl), all_steps(plain), strict=True):
        if type(s) is SubstitutedAction:
            key = (wl.agents[t.agent].archetype, s0.perm)
            seen.setdefault(key, set()).add(s.perm)
    several = [v for (arch, perm), v in seen.items() if len(alternatives(role[arch], perm)) >= 2]
    assert several and any(len(v) >= 2 for v in several)


def test_deviations_leave_planned_timings_and_grow_as_a_superset():
    low = build_workload(deviating(extra=0.05), 0)
    high = build_workload(deviating(extra=0.3), 0)
    none = build_workload(deviating(), 0)

    def planned(wl):
        return [(t.id, s.perm, s.think, s.duration, s.risk) for t, s in all_steps(wl)
                if type(s) is not ExtraAction]

    def extras(wl):
        return {(t.id, i) for t in wl.iter_tasks()
                for i, s in enumerate(x for x in t.steps if not isinstance(x, Delegation)
                                      and type(x) is not ExtraAction)
                if _extra_before(t, i)}

    assert planned(low) == planned(high) == planned(none)
    assert extras(low) < extras(high)


def _extra_before(task, k: int) -> bool:
    """Whether the k-th planned tool step of `task` has an extra action right before it."""
    seen = -1
    prev = None
    for s in task.steps:
        if isinstance(s, Delegation):
            prev = s
            continue
        if type(s) is not ExtraAction:
            seen += 1
            if seen == k:
                return type(prev) is ExtraAction
        prev = s
    return False


def test_archetype_overrides_only_what_it_gives():
    data = dict(MINI)
    data["behaviour"] = {"deviation": {"extra": 0.1, "substitute": 0.2},
                         "on_deny": {"retry": 2, "backoff": "3s"}}
    data["agents"] = [dict(MINI["agents"][0], behaviour={"deviation": {"extra": 0.5}}),
                      MINI["agents"][1]]
    spec = ScenarioSpec.model_validate(data)
    own = spec.behaviour_of("support")
    assert (own.deviation.extra, own.deviation.substitute) == (0.5, 0.2)
    assert (own.on_deny.retry, own.on_deny.backoff) == (2, 3.0)
    other = spec.behaviour_of("billing")
    assert other.deviation.extra == 0.1


# --------------------------------------------------------------------------- engine


class DenyTool(Control):
    """Denies every call to one tool; decides in zero time (a test double)."""

    model = "deny_tool_test"

    def __init__(self, name, params, world, tool="docs"):
        super().__init__(name, {}, world)
        self.tool = tool

    def decide(self, req: Request) -> Decision:
        return Decision(req.tool != self.tool, ("test",))

    def path(self):
        return [Local(Constant(value=0.0))]


def no_think(spec: ScenarioSpec, **fields) -> ScenarioSpec:
    return with_behaviour(spec, timing={"think": 0.0, "step": "1s"}, **fields)


def test_retry_backoff_and_replan_after_a_denial():
    spec = no_think(rich_spec(), behaviour={"on_deny": {"retry": 2, "backoff": "5s",
                                                        "replan": 1.0}})
    wl = build_workload(spec, 0)
    log = simulate(wl, DenyTool("d", {}, World(spec)))
    docs = [r for r in log.actions if r[A["tool"]] == "docs" or r[A["source"]] == "replan"]
    by_task: dict[int, list] = {}
    for r in docs:
        by_task.setdefault(r[A["task"]], []).append(r)
    checked = 0
    for rows in by_task.values():
        if rows[0][A["time"]] > spec.horizon - 60:
            continue
        sources = [r[A["source"]] for r in rows]
        assert sources == ["plan", "retry", "retry", "replan"], sources
        times = [r[A["time"]] for r in rows]
        assert times[1] - times[0] == pytest.approx(5.0) and times[2] - times[1] == pytest.approx(5.0)
        planned = rows[0]
        replanned = rows[3]
        # The alternative: the same action on another tool or resource of the role.
        assert replanned[A["action"]] == planned[A["action"]]
        assert (replanned[A["tool"]], replanned[A["resource"]]) != (planned[A["tool"]],
                                                                     planned[A["resource"]])
        # Declared alternatives first: answer_ticket declares its crm read, not the ledger's.
        assert (replanned[A["tool"]], replanned[A["action"]],
                replanned[A["resource"]]) == ("crm_api", "read", "crm")
        checked += 1
    assert checked > 20


def test_the_replan_choice_is_the_same_under_every_control():
    # Half the agents replan, half give up: who does must not depend on the control's timing.
    spec = no_think(rich_spec(), behaviour={"on_deny": {"replan": 0.5}})

    class SlowDenyTool(DenyTool):
        def path(self):
            return [Local(Constant(value=0.05))]

    def replanned(control):
        log = simulate(build_workload(spec, 0), control)
        return {r[A["task"]] for r in log.actions if r[A["source"]] == "replan"}

    fast = replanned(DenyTool("d", {}, World(spec)))
    slow = replanned(SlowDenyTool("s", {}, World(spec)))
    denied = {t.id for t in build_workload(spec, 0).tasks if t.type == "answer_ticket"}
    assert fast == slow and 0.3 < len(fast) / len(denied) < 0.7


def test_without_retry_a_denied_legitimate_step_fails_its_task():
    spec = no_think(rich_spec())
    wl = build_workload(spec, 0)
    log = simulate(wl, DenyTool("d", {}, World(spec)))
    failed = {r[T["task"]] for r in log.tasks if r[T["status"]] == "failed"}
    with_docs = {t.id for t in wl.tasks
                 if any(not isinstance(s, Delegation) and s.perm[0] == "docs" for s in t.steps)}
    ended = {r[T["task"]] for r in log.tasks if r[T["status"]] != "in_flight" and r[T["depth"]] == 0}
    assert failed == with_docs & ended
    assert not any(r[A["source"]] in ("retry", "replan") for r in log.actions)


def test_in_scope_is_the_declared_scope_not_the_plan():
    spec = with_behaviour(rich_spec(), declared_scope={"source": "predicted", "recall": 0.6,
                                                       "extra": 0.3},
                          behaviour={"deviation": {"extra": 0.2}})
    wl = build_workload(spec, 0)
    tasks = {t.id: t for t in wl.iter_tasks()}
    log = simulate(wl, make("static_iam", "static_iam", {}, World(spec)))
    n = 0
    for r in log.actions:
        t = tasks[r[A["task"]]]
        perm = (r[A["tool"]], r[A["action"]], r[A["resource"]])
        assert r[A["in_scope"]] == (perm in t.declared)
        n += perm in t.scope and perm not in t.declared
    assert n > 50  # planned actions the control did not know about


def test_a_denied_deviation_is_a_false_denial_and_fails_the_task():
    spec = with_behaviour(rich_spec(), declared_scope={"source": "plan"},
                          behaviour={"deviation": {"extra": 0.3, "explore": {"read": 1}}})
    wl = build_workload(spec, 0)
    log = simulate(wl, make("per_action_policy", "per_action_policy", {}, World(spec)))
    m = compute(log)
    rows = [r for r in log.actions if r[A["time"]] >= spec.warmup]
    legit = [r for r in rows if r[A["misuse_id"]] < 0]
    denied_dev = [r for r in legit if r[A["source"]] == "deviation" and not r[A["allowed"]]]
    assert denied_dev and all(not r[A["in_scope"]] for r in denied_dev)
    assert m["legit_denied"] == sum(not r[A["allowed"]] for r in legit)
    assert m["false_deny_rate"] == m["legit_denied"] / len(legit)
    failed = {r[T["task"]] for r in log.tasks if r[T["status"]] == "failed"}
    assert {r[A["task"]] for r in denied_dev} - failed <= {
        r[T["task"]] for r in log.tasks if r[T["status"]] == "in_flight"}
    assert m["task_success_rate"] < 1


def test_a_send_carries_the_sensitivity_of_what_the_task_read():
    spec = no_think(rich_spec(), declared_scope={"source": "plan"})
    seen = []

    class Record(DenyTool):
        def decide(self, req):
            seen.append((req.task_id, req.action, req.data_sensitivity))
            return Decision(True, ("ok",))

    simulate(build_workload(spec, 0), Record("r", {}, World(spec)), probe=False)
    sends = [s for s in seen if s[1] == "send"]
    assert sends and {s[2] for s in sends} == {"confidential"}  # answer_ticket read the crm
    assert all(s[2] is None for s in seen if s[1] != "send")


# --------------------------------------------------------------------------- arguments


def test_argument_values_and_known_rate():
    spec = long()
    wl = build_workload(spec, 0)
    recips = [s.args for _, s in all_steps(wl) if s.args is not None and "recipient" in s.args.values]
    amounts = [s.args.values["amount"] for _, s in all_steps(wl)
               if s.args is not None and "amount" in s.args.values]
    unknown = sum("recipient" in a.unknown for a in recips)
    assert len(recips) > 300 and binomial_ok(unknown, len(recips), 0.1)
    assert all(a.values["recipient"].endswith(":found") == ("recipient" in a.unknown) for a in recips)
    # An undeclared value is found in the plan's last read before the step: answer_ticket reads
    # crm, then wiki, then sends the reply.
    replies = [s.args for _, s in all_steps(wl) if s.args is not None
               and "recipient" in s.args.values and s.misuse_id < 0]
    assert {a.derived for a in replies} == {frozenset(), frozenset({"wiki"})}
    assert all(a.derived == ({"wiki"} if "recipient" in a.unknown else set()) for a in replies)
    assert len(amounts) > 20 and 30 < sorted(amounts)[len(amounts) // 2] < 200  # p50 80


def test_choice_and_constant_arguments():
    data = rich_spec().model_dump(mode="json", by_alias=True, exclude_unset=True)
    data["tasks"]["reconcile"]["steps"][0]["args"] = {"mode": "full", "pick": {"choice": {"a": 3, "b": 1}}}
    data["horizon"] = "200h"  # hundreds of draws (the default horizon gives two)
    wl = build_workload(ScenarioSpec.model_validate(data), 0)
    vals = [s.args.values for _, s in all_steps(wl) if s.args is not None and "mode" in s.args.values]
    assert vals and all(v["mode"] == "full" for v in vals)
    picks = Counter(v["pick"] for v in vals)
    assert binomial_ok(picks["a"], len(vals), 0.75)
    assert len(vals) > 500 and set(picks) == {"a", "b"}  # the last choice is drawn too


def test_rules_see_args_and_absent_args_read_as_none():
    from simharness.policy.rules import compile_rules

    pol = compile_rules({"rules": [
        {"id": "big", "effect": "deny", "when": {"args.amount": {"gt": 500}}},
        {"id": "unknown", "effect": "deny", "when": {"args.recipient.known": False}},
        {"id": "ok", "effect": "allow", "when": {}}]})
    from tests.unit.test_golden_cases import make_request

    assert pol.evaluate(make_request({"args": {"amount": 900}})).reasons == ("big",)
    assert pol.evaluate(make_request({"args": {"amount": 90}})).allow
    assert pol.evaluate(make_request({"args": {"recipient": "x"}, "args_unknown": ["recipient"]}
                                     )).reasons == ("unknown",)
    assert pol.evaluate(make_request({})).allow  # no recipient: the rule does not apply


# --------------------------------------------------------------------------- misuse


def test_every_injected_permission_exists_in_the_tool_model():
    specs = [load_scenario(p) for p in sorted(data_dir("scenarios").glob("*.yaml"))]
    specs.append(rich_spec(misuse={"rate": 1.0}))
    for spec in specs:
        spec = with_behaviour(spec, misuse={**spec.misuse.model_dump(), "rate": 0.5})
        perms = set(permission_weights(spec))
        wl = build_workload(spec, 0)
        n = 0
        for t in wl.iter_tasks():
            for s in (*t.steps, *t.attacker, *t.replay):
                if not isinstance(s, Delegation) and s.misuse_id >= 0:
                    assert s.perm in perms, (spec.name, s.kind, s.perm)
                    n += 1
        assert n > 0, spec.name


def test_out_of_scope_resource_is_skipped_without_a_real_target(mini):
    # In the mini scenario no tool of a planned step reaches a second resource.
    spec = with_behaviour(mini, misuse={"rate": 1.0, "kinds": {"out_of_scope_resource": 1}})
    wl = build_workload(spec, 0)
    assert not wl.misuse


def outcomes_by_control(spec: ScenarioSpec, controls: dict[str, tuple[str, dict]]):
    out = {}
    for name, (model, params) in controls.items():
        totals = Counter()
        for rep in range(2):
            log = simulate(build_workload(spec, rep), make(name, model, params, World(spec)))
            for row in misuse_outcomes(log):
                totals.update({k: row[k] for k in ("injected", "prevented", "detected", "missed")})
        out[name] = totals
    return out


def in_plan(kind: str) -> ScenarioSpec:
    data = rich_spec().model_dump(mode="json", by_alias=True, exclude_unset=True)
    data["tasks"]["answer_ticket"]["steps"][-1]["args"] = {"recipient": "known"}
    data["misuse"] = {"rate": 0.5, "kinds": {kind: 1}}
    data["declared_scope"] = {"source": "plan"}
    return ScenarioSpec.model_validate(data)


def policy_without(rule_id: str, tmp_path: Path) -> str:
    doc = yaml.safe_load((data_dir("controls") / DEFAULT_POLICIES["rules"]).read_text())
    doc["rules"] = [r for r in doc["rules"] if r["id"] != rule_id]
    path = tmp_path / "no_rule.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_argument_tampering_is_stopped_only_by_an_argument_rule(tmp_path):
    spec = in_plan("argument_tampering")
    res = outcomes_by_control(spec, {
        "static_iam": ("static_iam", {}), "sse_only": ("sse_only", {}),
        "jit_per_task": ("jit_per_task", {}),
        "per_action_policy": ("per_action_policy", {}),
        "no_rule": ("per_action_policy", {"policy": policy_without("forbid-unknown-recipient",
                                                                   tmp_path)})})
    n = res["static_iam"]["injected"]
    assert n > 20
    for name in ("static_iam", "sse_only", "jit_per_task", "no_rule"):
        assert res[name]["missed"] == res[name]["injected"] == n, name
    assert res["per_action_policy"]["prevented"] == res["per_action_policy"]["injected"] == n


def test_argument_tampering_multiplies_an_amount_by_the_tamper_factor():
    data = rich_spec().model_dump(mode="json", by_alias=True, exclude_unset=True)
    data["tasks"]["reconcile"]["steps"][1]["args"] = {"amount": 100.0}
    data["misuse"] = {"rate": 1.0, "kinds": {"argument_tampering": 1},
                      "params": {"tamper_factor": 7}}
    wl = build_workload(ScenarioSpec.model_validate(data), 0)
    tampered = [s for t in wl.tasks if t.type == "reconcile" for s in t.steps
                if s.misuse_id >= 0]
    assert tampered and all(s.args.values["amount"] == 700.0 and s.args.unknown == {"amount"}
                            for s in tampered)


def test_in_plan_exfiltration_uses_a_planned_send_and_the_data_read():
    spec = in_plan("in_plan_exfiltration")
    wl = build_workload(spec, 0)
    for t in wl.tasks:
        if t.kind != "in_plan_exfiltration":
            continue
        (i, goal), = [(i, s) for i, s in enumerate(t.steps) if s.misuse_id >= 0]
        assert goal.goal and goal.perm in t.scope and goal.perm[1] == "send"
        res = spec.resource(goal.perm[2])
        assert res.external and res.approved
        read = [s.perm[2] for s in t.steps[:i] if s.perm[1] == "read"]
        top = max(read, key=lambda r: spec.weights.sensitivity[spec.resource(r).sensitivity])
        assert goal.data_sensitivity == spec.resource(top).sensitivity
        assert "recipient" in goal.args.unknown
    res = outcomes_by_control(spec, {"static_iam": ("static_iam", {}),
                                     "sse_only": ("sse_only", {}),
                                     "jit_per_task": ("jit_per_task", {})})
    for name, r in res.items():
        assert r["injected"] > 10 and r["missed"] == r["injected"], name


def test_unreached_instances_are_not_counted_as_prevented():
    # Every legitimate docs call is denied and fails its task before a late misuse step.
    spec = no_think(rich_spec(), misuse={"rate": 1.0, "kinds": {"argument_tampering": 1}},
                    declared_scope={"source": "plan"})
    wl = build_workload(spec, 0)
    log = simulate(wl, DenyTool("d", {}, World(spec)))
    (row,) = misuse_outcomes(log)
    failed = {r[T["task"]] for r in log.tasks if r[T["status"]] == "failed"}
    # The tampered step (the reply) comes after the docs read in answer_ticket.
    unreached = sum(1 for m in wl.misuse if m.task in failed and m.arrival >= spec.warmup)
    assert row["unreached"] == unreached > 0
    assert row["prevented"] == 0  # DenyTool never judges a tampered reply


def test_plan_uncertainty_scenario_asks_its_question():
    text = find_scenario("plan_uncertainty").read_text()
    assert text.startswith("# Question: how much plan knowledge (recall)")
    spec = load_scenario("plan_uncertainty")
    assert set(spec.sweep or {}) == {"declared_scope.recall", "behaviour.deviation.extra"}


def test_run_prints_a_notice_only_for_plan_following_scenarios(tmp_path):
    from typer.testing import CliRunner

    from simharness.cli import app

    args = ["--replications", "1", "--controls", "none", "--horizon", "30m", "-q"]
    plain = CliRunner().invoke(app, ["run", str(DATA / "baseline_plan_following.yaml"),
                                     "--out", str(tmp_path / "a"), *args])
    shipped = CliRunner().invoke(app, ["run", "baseline", "--out", str(tmp_path / "b"), *args])
    assert plain.exit_code == shipped.exit_code == 0, (plain.output, shipped.output)
    assert "cannot misjudge legitimate work" in plain.output
    assert "notice:" not in shipped.output


def test_schema_describes_behaviour_declared_scope_and_arguments():
    schema = ScenarioSpec.model_json_schema()
    defs = schema["$defs"]
    assert "never its realised plan" in defs["DeclaredScope"]["description"]
    for name, fields in (("Deviation", ("extra", "substitute", "explore")),
                         ("OnDeny", ("retry", "backoff", "replan")),
                         ("DeclaredScope", ("source", "recall", "extra")),
                         ("KnownArg", ("known",))):
        for f in fields:
            assert defs[name]["properties"][f].get("description"), (name, f)
    assert "args.<name>.known" in defs["ToolStep"]["properties"]["args"]["description"]
    assert schema["properties"]["behaviour"]["description"]
