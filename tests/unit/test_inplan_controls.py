"""task_policy, data_flow, human_approval: every parameter changes a decision it should, the
reviewer pool against hand-computed queues and the fatigue law, the workload's provenance."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import replace

import numpy as np
import pytest
from pydantic import TypeAdapter

from simharness.actions import Action, AgentInfo, InjectedAction, Task
from simharness.controls.base import Ledger, Local, ReviewPool, Station, TaskContext, World, make
from simharness.loader import load_scenario
from simharness.reviewers import (
    APPROVED,
    REJECTED,
    TIMEOUT,
    ReviewDesk,
    next_staffed,
    staffed_seconds,
)
from simharness.rng import BlockSampler
from simharness.testing import request_for
from simharness.units import Distribution, Uniform
from simharness.workload import build_workload


@pytest.fixture(scope="module")
def spec():
    return load_scenario("in_plan_attacks")


@pytest.fixture(scope="module")
def world(spec):
    return World(spec)


SUPPORT = ("support", "support-0")


def agent(world) -> AgentInfo:
    return AgentInfo(0, "support-0", "support", "per_agent", "first_party", world.roles["support"])


def context(world, declared, declared_args, task_id=1) -> TaskContext:
    task = Task(task_id, "answer_ticket", 0, 0.0, [], frozenset(declared), declared=frozenset(declared),
                declared_args=declared_args)
    return TaskContext(task, agent(world), "support-0", None, 0, True)


SEND = ("http", "send", "outbound_mail")
PASTE = ("http", "send", "paste_site")
READ = ("crm_api", "read", "crm")
WRITE_LEDGER = ("sql", "write", "ledger")


def req(world, perm, **kw):
    """A request of task 1, in scope when the test's task declared it (as the engine says)."""
    kw.setdefault("in_scope", perm in DECLARED)
    return request_for(world, perm, archetype="support", identity="support-0", task_id=1, **kw)


# -- task_policy ---------------------------------------------------------------------------
DECLARED = {SEND, READ}


def started(world, params=None, declared=(SEND, READ), declared_args=None):
    c = make("tp", "task_policy", params or {}, world)
    c.on_task_start(context(world, declared, declared_args or {"recipient": frozenset({"alice"})}),
                    None, 0.0)
    return c


def test_task_policy_allows_only_declared_values(world):
    c = started(world)
    assert c.decide(req(world, SEND, args={"recipient": "alice"})).allow
    bad = c.decide(req(world, SEND, args={"recipient": "attacker"}))
    assert not bad.allow and bad.reasons == ("argument-not-declared",) and not bad.escalate
    assert not c.decide(req(world, ("crm_api", "write", "crm"))).allow  # not declared
    assert c.decide(req(world, READ)).allow


def test_task_policy_numbers_up_to_the_declared_amount(world):
    role = world.roles["support"] | {WRITE_LEDGER}
    world2 = World(world.spec)
    world2.roles = {**world.roles, "support": role}
    c = make("tp", "task_policy", {}, world2)
    ctx = context(world2, (WRITE_LEDGER,), {"amount": frozenset({80.0, 12.5})})
    ctx.agent = replace(ctx.agent, role=role)
    c.on_task_start(ctx, None, 0.0)
    ok = [c.decide(req(world2, WRITE_LEDGER, args={"amount": a}, in_scope=True)).allow
          for a in (12.5, 80.0, 80.000001, 800.0, math.nan)]
    assert ok == [True, True, False, False, False]


def test_task_policy_constrains_only_the_named_arguments(world):
    c = started(world, {"constrain": ["amount"]})
    assert c.decide(req(world, SEND, args={"recipient": "attacker"})).allow


def test_task_policy_on_unknown_escalates_to_reviewers(world):
    c = started(world, {"on_unknown": "escalate"})
    d = c.decide(req(world, SEND, args={"recipient": "attacker"}))
    assert not d.allow and d.escalate
    assert isinstance(c.reviewers(), ReviewPool)
    assert started(world).reviewers() is None
    # Scope violations are never escalated.
    assert not c.decide(req(world, ("crm_api", "delete", "crm"))).escalate


def test_task_policy_destinations(world):
    both = (SEND, PASTE)
    paste = req(world, PASTE, in_scope=True)
    assert not started(world, declared=both).decide(paste).allow  # not approved
    c = started(world, {"destinations": ["paste_site"]}, declared=both)
    assert c.decide(paste).allow
    assert c.decide(req(world, SEND, args={"recipient": "alice"})).reasons == ("destination-not-allowed",)
    with pytest.raises(ValueError, match="unknown resource"):
        make("tp", "task_policy", {"destinations": ["nowhere"]}, world)


def test_task_policy_ends_with_its_task_and_needs_attestation(world):
    c = started(world)
    r = req(world, READ)
    assert c.decide(replace(r, attested=False)).reasons == ("unattested",)
    assert c.decide(replace(r, task_id=2)).reasons == ("no-task-policy",)
    c.on_task_end(context(world, (), {}), None, None, 10.0)
    assert c.decide(r).reasons == ("no-task-policy",)


def test_task_policy_evaluates_locally_or_at_a_pdp(world):
    assert isinstance(make("tp", "task_policy", {}, world).path()[0], Local)
    pdp = make("tp", "task_policy", {"evaluate": "pdp", "pdp": {"servers": 3}}, world).path()[0]
    assert isinstance(pdp, Station) and pdp.name == "pdp" and pdp.servers == 3


# -- data_flow -----------------------------------------------------------------------------
def flow(world, **params):
    return make("df", "data_flow", params, world)


def test_data_flow_value_granularity_follows_each_value(world):
    c = flow(world)
    assert not c.decide(req(world, SEND, arg_sources=frozenset({"crm"}))).allow  # crm untrusted
    assert c.decide(req(world, SEND, arg_sources=frozenset({"wiki"}),
                        read_sources=frozenset({"crm"}))).allow


def test_data_flow_task_granularity_taints_everything_after_an_untrusted_read(world):
    c = flow(world, granularity="task")
    d = c.decide(req(world, ("docs", "write", "wiki"), read_sources=frozenset({"crm"})))
    assert not d.allow and d.reasons == ("untrusted-flow",)
    assert c.decide(req(world, ("docs", "write", "wiki"), read_sources=frozenset({"wiki"}))).allow


def test_data_flow_untrusted_sources_and_sinks_are_parameters(world):
    wiki = req(world, ("docs", "write", "wiki"), arg_sources=frozenset({"wiki"}))
    assert flow(world).decide(wiki).allow
    assert not flow(world, untrusted=["wiki"]).decide(wiki).allow
    assert flow(world, untrusted=["wiki"], sinks=["send"]).decide(wiki).allow


def test_data_flow_egress_ceiling(world):
    carrying = req(world, SEND, carries=frozenset({"crm"}))  # confidential
    assert flow(world).decide(carrying).reasons == ("sensitive-egress",)
    assert flow(world, max_external="confidential").decide(carrying).allow
    ledger = req(world, SEND, carries=frozenset({"ledger"}))  # restricted
    assert not flow(world, max_external="confidential").decide(ledger).allow
    # Internal destinations are not egress.
    assert flow(world).decide(req(world, ("docs", "write", "wiki"), carries=frozenset({"crm"}))).allow
    # Task granularity: what the task read is the payload.
    assert not flow(world, granularity="task").decide(
        req(world, SEND, read_sources=frozenset({"ledger"}))).allow
    with pytest.raises(ValueError, match="sensitivity level"):
        flow(world, max_external="secret")


def test_data_flow_on_violation_escalates(world):
    d = flow(world, on_violation="escalate").decide(req(world, SEND, carries=frozenset({"crm"})))
    assert d.escalate and not d.allow
    assert flow(world).reviewers() is None and flow(world, on_violation="escalate").reviewers()


# -- human_approval ------------------------------------------------------------------------
def test_human_approval_escalation_rule(world):
    c = make("ha", "human_approval", {"risk_above": 0.8}, world)
    assert c.decide(req(world, READ, risk=0.81)).escalate
    assert c.decide(req(world, READ, risk=0.8)).allow
    assert c.decide(req(world, READ, risk=math.nan)).escalate  # a broken score asks a human
    assert c.decide(req(world, SEND, risk=0.1, args_unknown=frozenset({"recipient"}))).escalate
    no_args = make("ha", "human_approval", {"unknown_args": False}, world)
    assert no_args.decide(req(world, SEND, risk=0.1, args_unknown=frozenset({"recipient"}))).allow
    heavy = make("ha", "human_approval", {"risk_above": None, "weight_at_least": 32}, world)
    # w(sql admin ledger) = 16 * 8 = 128; w(crm read) = 4
    assert heavy.decide(req(world, ("sql", "admin", "ledger"), risk=1.0)).escalate
    assert heavy.decide(req(world, READ, risk=1.0)).allow


def test_layered_escalation_yields_to_a_deny(world):
    params = {"members": [{"model": "task_policy", "params": {"on_unknown": "escalate"}},
                          {"model": "human_approval", "params": {"risk_above": 0.5}}]}
    c = make("l", "layered", params, world)
    c.members[0].on_task_start(context(world, (SEND, READ), {"recipient": frozenset({"alice"})}),
                               None, 0.0)
    c._parts = {}
    assert c.decide(req(world, READ, risk=0.9)).escalate
    assert c.decide(req(world, READ, risk=0.1)).allow
    d = c.decide(req(world, ("crm_api", "delete", "crm"), risk=0.9))
    assert not d.allow and not d.escalate  # out of the task policy: no human can allow it
    assert c.reviewers() == c.members[0].reviewers()


# -- the reviewer desk ---------------------------------------------------------------------
def pool(**kw) -> ReviewPool:
    base = dict(reviewers=1, service=60.0, timeout=150.0, on_timeout="deny", hours=None,
                catch_rate=1.0, false_reject=0.0, fatigue=20.0)
    merged = {**base, **kw}
    merged["service"] = TypeAdapter(Distribution).validate_python(merged["service"])
    return ReviewPool(**merged)


def desk(p: ReviewPool, warmup=0.0, horizon=1e9, seed=0) -> ReviewDesk:
    rng = np.random.default_rng(seed)
    return ReviewDesk(p, BlockSampler(p.service, rng),
                      BlockSampler(Uniform(dist="uniform", low=0.0, high=1.0), rng), warmup, horizon)


def test_review_queue_is_fcfs_with_a_timeout():
    d = desk(pool())
    # One reviewer, 60 s each: verdicts at 60, 120, 180 for requests at 0, 10, 20; the third
    # waits 160 s > 150 s (the reviewer finishes anyway); the fourth is never picked up.
    out = [d.review(t, misuse=False) for t in (0.0, 10.0, 20.0, 30.0)]
    assert out == [(60.0, APPROVED), (110.0, APPROVED), (150.0, TIMEOUT), (150.0, TIMEOUT)]
    assert d.free == [180.0]
    assert d.busy == 180.0 and d.timeouts == 2 and d.requested == 4


def test_review_verdicts_follow_catch_and_false_reject_rates():
    d = desk(pool(service=0.0, catch_rate=0.7, false_reject=0.1, fatigue=1e12))
    n = 20000
    misuse = sum(d.review(float(i), True)[1] == REJECTED for i in range(n)) / n
    legit = sum(d.review(float(n + i), False)[1] == REJECTED for i in range(n)) / n
    for got, want in ((misuse, 0.7), (legit, 0.1)):
        assert abs(got - want) < 4 * math.sqrt(want * (1 - want) / n)


@pytest.mark.parametrize("load", [0, 10, 40])
def test_fatigue_lowers_the_catch_rate_as_the_law_says(load):
    """With L approvals per reviewer in the last hour a misuse is caught with probability
    catch_rate * exp(-L / fatigue)."""
    p = pool(reviewers=2, service=0.0, catch_rate=0.9, fatigue=20.0)
    d = desk(p)
    n, caught = 20000, 0
    for _ in range(n):
        d.recent = deque([5000.0] * (2 * load))  # 2 reviewers x L approvals, within the hour
        caught += not d._approves(6000.0, True)
    want = 0.9 * math.exp(-load / 20.0)
    assert abs(caught / n - want) < 4 * math.sqrt(want * (1 - want) / n) + 1e-9
    d.recent = deque([1000.0] * 100)  # more than an hour ago: forgotten
    d._approves(6000.0, False)
    assert list(d.recent) == [6000.0]


def brute_staffed(a, b, hours):
    ts = np.arange(a, b, 60.0) + 30.0  # minute midpoints
    s = (ts % 86400) / 3600
    lo, hi = hours
    on = (s >= lo) & (s < hi) if lo <= hi else (s >= lo) | (s < hi)
    return on.sum() * 60.0


@pytest.mark.parametrize("hours", [(9, 17), (22, 6)])
def test_working_hours_against_a_minute_grid(hours):
    assert staffed_seconds(0, 3 * 86400, hours) == brute_staffed(0, 3 * 86400, hours)
    assert staffed_seconds(3600 * 5, 3600 * 50, hours) == brute_staffed(3600 * 5, 3600 * 50, hours)
    for t in np.arange(0, 2 * 86400, 1800.0):
        nxt = next_staffed(t, hours)
        minutes = np.arange(t, nxt + 1, 60.0)
        s = (minutes % 86400) / 3600
        lo, hi = hours
        on = (s >= lo) & (s < hi) if lo <= hi else (s >= lo) | (s < hi)
        assert on[-1] and not on[:-1].any(), (t, nxt)


def test_requests_out_of_hours_wait_for_the_morning():
    night = 3 * 3600.0
    assert desk(pool(hours=(9, 17))).review(night, False) == (150.0, TIMEOUT)
    d = desk(pool(hours=(9, 17), timeout=7 * 3600.0), horizon=2 * 86400.0)
    assert d.review(night, False) == (6 * 3600.0 + 60.0, APPROVED)
    assert d.utilization() == 60.0 / (2 * 8 * 3600.0)  # busy over two staffed days


def test_utilization_of_a_window_shorter_than_a_second():
    """Busy over staffed time holds for any staffed time above zero (NaN only at zero)."""
    d = desk(pool(service=0.25), horizon=0.5)
    assert d.review(0.0, False) == (0.25, APPROVED)
    assert d.utilization() == 0.25 / 0.5
    assert math.isnan(desk(pool(), warmup=5.0, horizon=5.0).utilization())


# -- the workload's provenance ---------------------------------------------------------------
def test_workload_records_where_values_come_from(spec):
    wl = build_workload(spec.model_copy(update={"misuse": spec.misuse.model_copy(update={"rate": 0.0})}), 0)
    replies = statements = 0
    for task in wl.iter_tasks():
        steps = [s for s in task.steps if isinstance(s, Action) and s.args is not None]
        for s in steps:
            if task.type == "answer_ticket" and s.perm == SEND:
                replies += 1
                found = "recipient" in s.args.unknown
                assert s.args.derived == (frozenset({"crm"}) if found else frozenset())  # found_in
                assert (s.args.values["recipient"] in task.declared_args.get("recipient", ())) != found
            if task.type == "send_statement":
                statements += 1
                assert s.args.carries == frozenset({"crm"})
            if task.type == "issue_refund":
                assert task.declared_args["amount"] == frozenset({s.args.values["amount"]})
    assert replies > 100 and statements > 20


def test_found_value_defaults_to_the_last_read_before_the_step(spec):
    data = spec.model_dump()
    step = data["tasks"]["answer_ticket"]["steps"][3]
    step["args"]["recipient"] = {"known": 0.0}
    s2 = type(spec).model_validate(data)
    wl = build_workload(s2.model_copy(update={"misuse": s2.misuse.model_copy(update={"rate": 0.0})}), 0)
    t = next(t for t in wl.tasks if t.type == "answer_ticket")
    send = next(s for s in t.steps if isinstance(s, Action) and s.perm == SEND)
    assert send.args.derived == frozenset({"wiki"})  # the plan reads crm, then wiki
    assert "recipient" not in t.declared_args


def test_injected_values_ride_on_an_untrusted_read(spec):
    wl = build_workload(spec, 0)
    seen = {"argument_tampering": 0, "in_plan_exfiltration": 0}
    for task in wl.iter_tasks():
        for s in task.steps:
            if not isinstance(s, InjectedAction) or s.kind not in seen or s.args is None:
                continue
            seen[s.kind] += 1
            reads = [x.perm[2] for x in task.steps[:task.steps.index(s)]
                     if isinstance(x, Action) and x.perm[1] == "read"]
            # crm (untrusted) wins over a later trusted read; else the last read
            want = "crm" if "crm" in reads else (reads[-1] if reads else None)
            if want is not None:
                assert want in s.args.derived, (reads, s.args)
            if s.kind == "in_plan_exfiltration":
                assert s.args.carries and s.args.carries <= set(reads)
    assert all(n > 10 for n in seen.values()), seen


# -- through the engine ----------------------------------------------------------------------
def run_control(spec, model, params):
    from simharness.engine import A, simulate
    from simharness.metrics import compute

    short = spec.model_copy(update={"horizon": 3 * 3600.0})
    log = simulate(build_workload(short, 0), make(model, model, params, World(short)))
    return log, compute(log), A


@pytest.mark.parametrize("on_timeout", ["deny", "allow"])
def test_escalations_wait_for_reviewers_and_metrics_count_them(spec, on_timeout):
    params = {"risk_above": 0.6, "reviewers": {"reviewers": 1, "timeout": "5m",
                                               "on_timeout": on_timeout}}
    log, m, A = run_control(spec, "human_approval", params)
    rows = [r for r in log.actions if r[A["time"]] >= log.warmup]
    reviewed = [r for r in rows if r[A["review"]]]
    assert all("needs-approval" in r[A["reasons"]] for r in reviewed)
    assert all("needs-approval" not in r[A["reasons"]] for r in rows if not r[A["review"]])
    assert m["approvals_requested"] == len(reviewed)
    assert m["approvals_requested_per_hour"] == len(reviewed) / ((log.horizon - log.warmup) / 3600)
    timeouts = [r for r in reviewed if r[A["review"]] == "timeout"]
    assert m["review_timeouts"] == len(timeouts) > 0  # one reviewer cannot keep up
    assert all(r[A["allowed"]] == (on_timeout == "allow") for r in timeouts)
    assert all(r[A["latency"]] >= 300.0 for r in timeouts)  # waited the whole timeout
    verdicts = [r for r in reviewed if r[A["review"]] != "timeout"]
    assert all(r[A["allowed"]] == (r[A["review"]] == "approved") for r in verdicts)
    judged = [r for r in verdicts if r[A["misuse_id"]] >= 0]
    approved = sum(r[A["review"]] == "approved" for r in judged)
    assert m["misuse_approved"] == approved / len(judged)
    assert m["misuse_judged"] == len(judged) and m["misuse_approved_actions"] == approved
    assert m["misuse_escalated"] == sum(r[A["misuse_id"]] >= 0 for r in reviewed)
    waits = sorted(min(r[A["latency"]], 300.0) for r in reviewed)
    assert m["approval_wait_p95_s"] <= waits[-1] and m["approval_wait_p50_s"] >= waits[0]


@pytest.mark.parametrize("model", ["task_policy", "data_flow", "human_approval"])
def test_the_local_check_is_the_decision_latency(spec, model):
    params = {"check": "1s"} | ({"risk_above": None, "unknown_args": False}
                                if model == "human_approval" else {})
    log, _, A = run_control(spec, model, params)
    assert {r[A["latency"]] for r in log.actions} == {1.0}


def test_more_reviewers_wait_less_and_rubber_stamp_less(spec):
    """Paired on one workload: with one reviewer, waits, timeouts and the share of misuse
    approved are higher than with four (fatigue rises with approvals per reviewer)."""
    base = {"risk_above": 0.6}
    one = run_control(spec, "human_approval", base | {"reviewers": {"reviewers": 1}})[1]
    four = run_control(spec, "human_approval", base | {"reviewers": {"reviewers": 4}})[1]
    assert one["approval_wait_p50_s"] > four["approval_wait_p50_s"]
    assert one["review_timeouts"] > four["review_timeouts"]
    assert one["reviewer_utilization"] > four["reviewer_utilization"]


# -- what mutation testing found unpinned ----------------------------------------------------
@pytest.mark.parametrize("model", ["task_policy", "data_flow", "human_approval"])
def test_quarantine_and_audit_attribution(world, model):
    c = make(model, model, {"revoke_on_deviation": True, "quarantine": "1h"}, world)
    if model == "task_policy":
        c.on_task_start(context(world, (READ,), {}), None, 0.0)
    r = req(world, READ)
    assert c.decide(r).allow is True
    c.on_deviation("support-0", Ledger(world.weight), 0.0)
    d = c.decide(r)
    assert d.allow is False and d.reasons == ("identity-quarantined",)
    assert c.decide(replace(r, time=3601.0)).allow is True  # the quarantine ends
    # The decision record names agent and task only for an attested, non-shared identity.
    assert c.attributes(r) is True
    assert not c.attributes(replace(r, attested=False))
    assert not c.attributes(replace(r, identity_mode="shared"))


def test_task_policy_reasons_and_an_unconstrained_argument_before_a_constrained_one(world):
    c = started(world, {"constrain": ["amount"]}, declared=(SEND,),
                declared_args={"amount": frozenset({10.0})})
    d = c.decide(req(world, SEND, args={"recipient": "x", "amount": 1e6}))
    assert d.allow is False and d.reasons == ("argument-not-declared",)
    c = started(world)
    for request, reason in ((replace(req(world, READ), attested=False), "unattested"),
                            (replace(req(world, READ), task_active=False), "no-task-policy"),
                            (req(world, ("crm_api", "delete", "crm")), "outside-task-policy"),
                            (req(world, READ, entitled=False), "outside-task-policy")):
        d = c.decide(request)
        assert d.allow is False and d.reasons == (reason,)


def test_task_policy_pdp_carries_every_pdp_parameter(world):
    pdp = {"servers": 3, "rtt": "2ms", "service_time": "7ms", "timeout": "90ms",
           "fail_mode": "open", "cache": {"ttl": "5s", "key": ["identity", "tool"]}}
    st = make("tp", "task_policy", {"evaluate": "pdp", "pdp": pdp}, world).path()[0]
    assert (st.servers, st.timeout, st.fail_mode, st.cache_ttl, st.cache_key) == (
        3, 0.09, "open", 5.0, ("identity", "tool"))
    assert st.rtt.sample(np.random.default_rng(0), 1)[0] == 0.002
    assert st.service.sample(np.random.default_rng(0), 1)[0] == 0.007
    with pytest.raises(ValueError, match="natively"):
        make("tp", "task_policy", {"evaluate": "pdp", "pdp": {"service_time": "measured"}}, world)
    make("tp", "task_policy", {"pdp": {"service_time": "measured"}}, world)  # unused locally


def test_data_flow_edges(world):
    with pytest.raises(ValueError, match="unknown resource"):
        flow(world, untrusted=["nowhere"])
    # Only a send leaves: a write to an external resource is no egress.
    assert flow(world).decide(req(world, ("http", "write", "outbound_mail"),
                                  carries=frozenset({"crm"}))).allow is True
    # Task granularity also reads a send's labelled payload; at the ceiling is allowed.
    task = flow(world, granularity="task")
    assert task.decide(req(world, SEND, data_sensitivity="restricted")).allow is False
    assert task.decide(req(world, SEND, data_sensitivity="internal")).allow is True
    assert task.decide(req(world, SEND, read_sources=frozenset({"wiki"}))).allow is True
    esc = flow(world, on_violation="escalate")
    d = esc.decide(req(world, SEND, arg_sources=frozenset({"crm"})))
    assert d.allow is False and d.escalate is True and d.reasons == ("untrusted-flow",)
    d = flow(world).decide(req(world, SEND, carries=frozenset({"crm"})))
    assert d.allow is False and d.escalate is False


def test_weight_threshold_is_inclusive(world):
    c = make("ha", "human_approval", {"risk_above": None, "weight_at_least": 128}, world)
    assert c.decide(req(world, ("sql", "admin", "ledger"))).escalate  # w = 16 x 8 = 128


def test_review_edges():
    d = desk(pool(timeout=60.0))
    assert d.review(0.0, False) == (60.0, APPROVED)  # a verdict at the timeout is in time
    assert math.isnan(desk(pool(), warmup=10.0, horizon=10.0).utilization())
    w = desk(pool(), warmup=30.0, horizon=100.0)
    w.review(0.0, True)  # before the warm-up: busy from 30 to 60 counts, nothing else
    w.review(40.0, True)  # verdict at 120: busy from 60 to 100 counts
    assert w.busy == 70.0 and w.requested == 1 and w.misuse_escalated == 1
    assert w.misuse_judged == 1 and w.misuse_approved == 0  # catch_rate 1
    assert staffed_seconds(5.0, 5.0, (9, 17)) == 0.0 == staffed_seconds(9.0, 5.0, (9, 17))
    assert staffed_seconds(100.0, 250.0, None) == 150.0
    day = 86400.0
    assert staffed_seconds(1.5 * day, 3.5 * day, (9, 17)) == brute_staffed(1.5 * day, 3.5 * day, (9, 17))


def test_task_policy_equals_the_same_policy_at_a_pdp(spec, tmp_path):
    """Without argument constraints, a task policy is 'attested, entitled, declared, active,
    approved destinations': the same rules at a PDP with the same constant latency must give
    the same decisions and, probed by the authority measure, the same exposure."""
    from simharness.engine import A, simulate
    from simharness.metrics import compute

    rules = tmp_path / "same.yaml"
    rules.write_text(
        "policy_version: 1\nrules:\n"
        "  - {id: p, effect: allow, when: {attested: true, entitled: true, in_scope: true,"
        " task.active: true}}\n"
        "  - {id: d, effect: deny, when: {resource.external: true, resource.approved: false}}\n")
    short = spec.model_copy(update={"horizon": 2 * 3600.0})
    pdp = {"policy": str(rules), "pdp": {"servers": math.inf, "rtt": "0s", "service_time": "50us",
                                         "timeout": "1h"}}
    logs = [simulate(build_workload(short, 0), make(m, m, p, World(short)))
            for m, p in (("task_policy", {"constrain": [], "check": "50us"}),
                         ("per_action_policy", pdp))]
    allowed = [[r[A["allowed"]] for r in log.actions] for log in logs]
    assert allowed[0] == allowed[1] and 0 < sum(allowed[0]) < len(allowed[0])
    ours, theirs = (compute(log) for log in logs)
    assert ours["exposure"] == theirs["exposure"] > 0
    assert ours["blast_radius"] == theirs["blast_radius"]
