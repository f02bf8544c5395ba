"""Engine mechanisms no other test pins (survivors of the engine's uniform mutation sample):
the PDP decision cache, local checks in front of a queue, credential renewal through the
token service, escalation without reviewers, crashing controls, the detector's threshold,
token modes (of requests and of authority probes), the agent process dispatch and the
backends' error messages.

Workloads are built by hand (a few tasks with fixed think times and durations) so that every
expected time, latency and source below is worked out from the plan, not from another run."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from simharness import engine as engine_module
from simharness.actions import (
    PASSTHROUGH,
    REPLAY,
    Delegation,
    InjectedAction,
    intern_perm,
)
from simharness.controls.base import Control, Decision, Local, Station, World, make
from simharness.engine import A, Kernel, SimPyKernel, T, simulate
from simharness.units import Constant, Uniform
from simharness.workload import build_workload
from tests.conftest import MINI
from tests.handbuilt import (
    BILLING,
    CRM_READ,
    CRM_WRITE,
    DOCS_READ,
    SQL_READ,
    SQL_WRITE,
    SUPPORT,
    act,
    task,
    tiny_spec,
    workload,
)

ZERO = Constant(value=0.0)


def pdp(**kw) -> Station:
    """A PDP without queueing (infinite servers), zero latency unless given."""
    return Station("pdp", kw.pop("servers", math.inf), kw.pop("rtt", ZERO),
                   kw.pop("service", ZERO), **kw)


class Scripted:
    """A latency 'distribution' that repeats a fixed sequence of values (varies, never random)."""

    def __init__(self, values):
        self.values = np.asarray(values, dtype=float)

    def sample(self, rng, n):
        return np.resize(self.values, n)


class Spy(Control):
    """A plug-in control that records what the engine gives it."""

    model = "engine_mechanisms_spy"
    tool_audit = True

    def __init__(self, world, path=(), verdict=None, start=None, params=None):
        super().__init__("spy", params or {}, world)
        self._path = list(path)
        self.verdict = verdict or (lambda req: Decision(True, ("ok",)))
        self.start = start
        self.asked: list[dict] = []  # one per decide() call, fields as given then
        self.observed: list[Decision] = []
        self.contexts: list[tuple[int, str]] = []  # (task id, ctx.identity) at task start

    def decide(self, req):
        self.asked.append({"task": req.task_id, "depth": req.chain_depth, "mode": req.token_mode,
                           "archetype": req.archetype, "cred": req.credential,
                           "perm": req.perm, "time": req.time})
        return self.verdict(req)

    def observe(self, req, decision):
        self.observed.append(decision)

    def on_task_start(self, ctx, ledger, now):
        self.contexts.append((ctx.task.id, ctx.identity))
        return self.start(ctx, ledger, now) if self.start is not None else None

    def path(self):
        return list(self._path)


def task_token(world, ttl: float = math.inf, passthrough: bool = False):
    """An on_task_start hook issuing each task a token of its agent's role (`ttl` long); with
    `passthrough`, a delegate works with its delegator's token instead."""

    def start(ctx, ledger, now):
        if passthrough and ctx.parent_credential is not None:
            return ctx.parent_credential
        return ledger.issue(ctx.identity, world.roles[ctx.agent.archetype], now, ttl,
                            kind="task", task_id=ctx.task.id)

    return start


def deny_docs(req):
    return Decision(req.tool != "docs", ("docs-denied" if req.tool == "docs" else "ok",))


# --------------------------------------------------------------------------- backends


def test_simulate_passes_its_backend_argument_to_the_engine():
    """simulate(backend=...) overrides the scenario's engine (an unknown one is refused)."""
    spec = tiny_spec()
    wl = workload(spec, [task(1, SUPPORT, [act(CRM_READ)])])
    with pytest.raises(ValueError, match="unknown engine backend 'abacus'"):
        simulate(wl, Spy(World(spec)), backend="abacus", probe=False)


def test_simpy_backend_names_the_bad_delay():
    """On the SimPy backend a process sleeping a bad delay is named with that delay."""

    def sleeper():
        yield 1.0
        yield -2.5

    k = SimPyKernel()
    k.start(sleeper())
    with pytest.raises(ValueError, match=r"sleeper asked to sleep -2\.5 s"):
        k.run(10.0)


def test_one_task_at_a_time_agents_run_as_the_sequential_agent_process(monkeypatch):
    """An agent of concurrency 1 runs as Engine._agent, one of concurrency > 1 as _agent_concurrent."""
    started: list[str] = []

    class Recording(Kernel):
        __slots__ = ()

        def start(self, process, delay=0.0):
            started.append(getattr(process, "__qualname__", ""))
            super().start(process, delay)

    monkeypatch.setattr(engine_module, "Kernel", Recording)
    spec = tiny_spec()
    tasks = [task(1, SUPPORT, [act(CRM_READ)]), task(2, BILLING, [act(SQL_READ)], arrival=5.0)]
    simulate(workload(spec, tasks), Spy(World(spec)), probe=False)
    assert Counter(n for n in started if n.startswith("Engine._agent")) == {"Engine._agent": 2}
    # The spy sees the other dispatch too: billing working on two tasks at once.
    started.clear()
    spec2 = tiny_spec(agents=[dict(MINI["agents"][0], count=1),
                              dict(MINI["agents"][1], count=1, concurrency=2)])
    simulate(workload(spec2, tasks), Spy(World(spec2)), probe=False)
    assert Counter(n for n in started if n.startswith("Engine._agent")
                   and "<locals>" not in n) == {"Engine._agent": 1,
                                                "Engine._agent_concurrent": 1}


# --------------------------------------------------------------------------- request fields


def test_requests_carry_the_agent_archetype_and_top_level_token_mode_none():
    """Requests name the acting agent's archetype; top-level ones have token_mode none, a
    delegated sub-task's (no credentials) exchange."""
    spec = tiny_spec()
    sub = task(2, BILLING, [act(SQL_WRITE)], type_="issue_refund", depth=1)
    tasks = [task(1, SUPPORT, [act(CRM_READ), Delegation(1.0, sub), act(CRM_WRITE, think=1.0)],
                  type_="refund"),
             task(3, BILLING, [act(SQL_READ)], arrival=100.0, type_="reconcile")]
    spy = Spy(World(spec))
    log = simulate(workload(spec, tasks), spy, probe=False)
    rows = [(r[A["task"]], r[A["depth"]], r[A["archetype"]], r[A["token_mode"]])
            for r in log.actions]
    assert rows == [(1, 0, "support", "none"), (2, 1, "billing", "exchange"),
                    (1, 0, "support", "none"), (3, 0, "billing", "none")]
    assert [(q["task"], q["archetype"], q["mode"]) for q in spy.asked] == [
        (t, arch, mode) for t, _, arch, mode in rows]


def test_task_start_hook_sees_the_task_identity():
    """on_task_start's context carries the task's identity (per_agent name, per_task name/tN)."""
    spec = tiny_spec()
    sub = task(2, BILLING, [act(SQL_WRITE)], type_="issue_refund", depth=1)
    tasks = [task(1, SUPPORT, [Delegation(1.0, sub)], type_="refund"),
             task(5, BILLING, [act(SQL_READ)], arrival=50.0, type_="reconcile")]
    spy = Spy(World(spec))
    simulate(workload(spec, tasks), spy, probe=False)
    assert spy.contexts == [(1, "support-0"), (2, "billing-0/t2"), (5, "billing-0/t5")]


# --------------------------------------------------------------------------- local checks in front


def test_retry_and_replan_under_leading_local_checks_keep_their_source():
    """With varying local checks before the PDP, a retry and a replan are logged as such."""
    spec = tiny_spec(behaviour={"on_deny": {"retry": 1, "backoff": "5s", "replan": 1.0}})
    tasks = [task(1, SUPPORT, [act(DOCS_READ, think=2.0)])]
    spy = Spy(World(spec), path=[Local(Uniform(dist="uniform", low=0.01, high=0.02)), pdp()],
              verdict=deny_docs)
    log = simulate(workload(spec, tasks), spy, probe=False)
    assert [r[A["source"]] for r in log.actions] == ["plan", "retry", "replan"]
    assert [r[A["allowed"]] for r in log.actions] == [False, False, True]
    replanned = log.actions[2]
    assert (replanned[A["tool"]], replanned[A["action"]]) != ("docs", "read")
    assert log.tasks[0][T["status"]] == "completed"


def test_a_zero_lead_is_not_drawn_again():
    """Leading local checks are drawn once per request, also when they happen to take 0 s."""
    spec = tiny_spec()
    steps = [act(CRM_READ, think=100.0) for _ in range(4)]
    spy = Spy(World(spec), path=[Local(Scripted([0.0, 7.0])), pdp()])
    log = simulate(workload(spec, [task(1, SUPPORT, steps)]), spy, probe=False)
    # The script alternates 0 s and 7 s: one draw per request.
    assert [r[A["latency"]] for r in log.actions] == [0.0, 7.0, 0.0, 7.0]
    # Issue times: think 100 s after the previous one's latency and 1 s of work.
    assert [r[A["time"]] for r in log.actions] == [100.0, 201.0, 309.0, 410.0]


def test_delegated_actions_under_leading_local_checks_keep_the_parent_credential():
    """On the queued path a delegate that works with the delegator's token presents it
    (token_mode passthrough), and a passthrough action presents the parent's credential."""
    spec = tiny_spec()
    world = World(spec)

    start = task_token(world, passthrough=True)

    sneak = InjectedAction(CRM_READ, 1.0, 1.0, 0.0, misuse_id=0, kind="token_passthrough",
                           goal=True, present=PASSTHROUGH)
    sub = task(2, BILLING, [act(SQL_WRITE), sneak], type_="issue_refund", depth=1)
    tasks = [task(1, SUPPORT, [act(CRM_READ), Delegation(1.0, sub)], type_="refund")]
    spy = Spy(world, path=[Local(Uniform(dist="uniform", low=0.01, high=0.02)), pdp()],
              start=start)
    log = simulate(workload(spec, tasks), spy, probe=False)
    parent = log.ledger.credentials[0]
    assert parent.holder == "support-0" and len(log.ledger.credentials) == 1
    rows = [(r[A["task"]], r[A["identity"]], r[A["token_mode"]], r[A["credential"]])
            for r in log.actions]
    assert rows == [(1, "support-0", "none", parent.id),
                    (2, "billing-0/t2", "passthrough", parent.id),
                    (2, "support-0", "passthrough", parent.id)]


def test_a_replayed_token_is_used_at_its_offset_after_short_local_checks():
    """A replay after the task is issued at task end + offset, the local checks (< 1 s) waited
    out after that (counted in its latency)."""
    spec = tiny_spec()
    replay = tuple(InjectedAction(CRM_READ, offset, 1.0, 0.0, misuse_id=0, kind="token_replay",
                                  goal=True, present=REPLAY) for offset in (30.0, 40.0))
    tasks = [task(1, SUPPORT, [act(CRM_READ, think=3.0, duration=2.0)], replay=replay)]
    spy = Spy(World(spec), path=[Local(Uniform(dist="uniform", low=0.2, high=0.6)), pdp()])
    log = simulate(workload(spec, tasks), spy, probe=False)
    end = log.tasks[0][T["end"]]
    first = log.actions[0]
    assert end == pytest.approx(3.0 + first[A["latency"]] + 2.0)
    uses = [r for r in log.actions if r[A["kind"]] == "token_replay"]
    assert [r[A["time"]] for r in uses] == pytest.approx([end + 30.0, end + 40.0], abs=1e-9)
    assert all(0.2 <= r[A["latency"]] <= 0.6 for r in uses)


# --------------------------------------------------------------------------- decisions


def test_pdp_cache_answers_repeats_within_its_ttl():
    """A repeated request (same cache key) within the ttl is answered from the cache: no PDP
    visit, no latency, no policy evaluation; after the ttl it goes to the PDP again."""
    spec = tiny_spec()
    ttl = 30.0
    station = pdp(rtt=Constant(value=0.1), service=Constant(value=0.2), cache_ttl=ttl)
    support = [act(CRM_READ), act(CRM_READ, think=5.0), act(DOCS_READ, think=1.0),
               act(CRM_READ, think=60.0), act(CRM_WRITE, think=1.0), act(CRM_READ, think=10.0),
               act(CRM_READ, think=25.0)]
    tasks = [task(1, SUPPORT, support),
             task(2, BILLING, [act(SQL_READ, think=1.0), act(SQL_READ, think=2.0)])]
    spy = Spy(World(spec), path=[station])
    log = simulate(workload(spec, tasks), spy, probe=False)
    assert len(log.actions) == 9
    # Brute force over the log: an entry lives from decision + ttl; keyed as the station is.
    live: dict[tuple, float] = {}
    hits = misses = 0
    for r in log.actions:
        key = (r[A["identity"]], r[A["tool"]], r[A["action"]], r[A["resource"]])
        t = r[A["time"]]
        if key in live and live[key] > t:
            hits += 1
            assert r[A["latency"]] == 0.0, r
        else:
            misses += 1
            assert r[A["latency"]] == pytest.approx(0.3), r
            live[key] = t + 0.3 + ttl
        assert r[A["allowed"]]
    # Worked by hand: support's 2nd crm read (6.3 s, entry until 30.3 s) and its read at
    # 83.2 s (entry renewed by the miss at 69.6 s, until 99.9 s; the read at 109.2 s misses),
    # and billing's 2nd read (per_task identity: the same task, so the same key).
    assert (hits, misses) == (3, 6)
    assert len(spy.asked) == misses
    assert log.policy_evaluations == misses


def test_a_crashing_decide_is_logged_with_its_exception():
    """A control whose decide() raises is denied (fail closed) and the decision carries the
    exception's type and message."""
    spec = tiny_spec()

    def boom(req):
        raise ValueError("boom")

    spy = Spy(World(spec), path=[pdp()], verdict=boom)
    log = simulate(workload(spec, [task(1, SUPPORT, [act(CRM_READ)])]), spy, probe=False)
    (row,) = log.actions
    assert (row[A["allowed"]], row[A["reasons"]], row[A["without_decision"]]) == (
        False, "evaluation-error", False)
    assert [(d.allow, d.reasons, d.errors) for d in spy.observed] == [
        (False, ("evaluation-error",), ("ValueError: boom",))]


def test_an_escalation_without_reviewers_is_denied_at_once():
    """A plug-in that escalates with no reviewer pool is denied with no-reviewer, no wait and
    its errors kept."""
    spec = tiny_spec()

    def escalate(req):
        return Decision(False, ("ask-a-human",), ("Unsure: amount",), escalate=True)

    spy = Spy(World(spec), path=[Local(Constant(value=0.5))], verdict=escalate)
    log = simulate(workload(spec, [task(1, SUPPORT, [act(CRM_READ, think=4.0)])]), spy,
                   probe=False)
    (row,) = log.actions
    assert (row[A["allowed"]], row[A["reasons"]], row[A["review"]]) == (
        False, "ask-a-human;no-reviewer", "")
    assert row[A["latency"]] == 0.5
    assert log.tasks[0][T["end"]] == 4.5  # denied (abort) right after the local check
    assert [(d.allow, d.reasons, d.errors) for d in spy.observed] == [
        (False, ("ask-a-human", "no-reviewer"), ("Unsure: amount",))]


def test_the_detector_flags_only_risk_above_its_threshold():
    """The detector flags an action whose risk exceeds the threshold, not one equal to it."""
    spec = tiny_spec()
    steps = [act(CRM_READ, think=1.0, risk=0.5), act(CRM_READ, think=1.0, risk=0.75),
             act(CRM_READ, think=1.0, risk=0.25), act(CRM_READ, think=1.0, risk=0.5)]
    spy = Spy(World(spec), params={"detector": {"threshold": 0.5, "delay": 1.0}})
    log = simulate(workload(spec, [task(1, SUPPORT, steps)]), spy, probe=False)
    assert [r[A["risk"]] for r in log.actions] == [0.5, 0.75, 0.25, 0.5]
    assert log.flagged == {1}


def test_replan_alternatives_are_drawn_per_task():
    """Tasks denied at the same step index draw their replan alternatives independently."""
    spec = tiny_spec(behaviour={"on_deny": {"replan": 1.0}})
    tasks = [task(i, SUPPORT, [act(DOCS_READ, think=1.0)], arrival=60.0 * i) for i in range(40)]
    spy = Spy(World(spec), verdict=deny_docs)
    log = simulate(workload(spec, tasks), spy, probe=False)
    replans = {r[A["task"]]: (r[A["tool"]], r[A["action"]], r[A["resource"]])
               for r in log.actions if r[A["source"]] == "replan"}
    assert sorted(replans) == list(range(40))  # every task replanned
    # support's other reads: crm and the ledger, neither declared, so both are candidates;
    # each task's choice is its own coin, so both come up (P(all alike) = 2^-39).
    counts = Counter(replans.values())
    assert set(counts) == {CRM_READ, SQL_READ}
    assert min(counts.values()) >= 5


# --------------------------------------------------------------------------- credentials


def test_a_renewal_mid_task_waits_for_the_token_service():
    """A task token renewed after expiry is fetched through the token service (its latency
    delays the next request), as the first one was."""
    spec = tiny_spec()
    ctl = make("jit", "jit_per_task", {
        "ttl": "10s", "check": 0, "granularity": "permission",
        "token_service": {"servers": 1, "rtt": 0, "service_time": "1s"}}, World(spec))
    steps = [act(CRM_READ, duration=2.0), act(CRM_READ, think=20.0)]
    log = simulate(workload(spec, [task(1, SUPPORT, steps)]), ctl, probe=False)
    # Token at 0 (+1 s service); step 1 at 1, works 2 s; thinks 20 s: 23, past the expiry at
    # 10, so renewed at 23 (+1 s service): step 2 at 24.
    assert [r[A["time"]] for r in log.actions] == [1.0, 24.0]
    assert [r[A["allowed"]] for r in log.actions] == [True, True]
    assert [(c.issued, c.expires) for c in log.ledger.credentials] == [(0.0, 10.0), (23.0, 33.0)]
    assert [r[A["credential"]] for r in log.actions] == [0, 1]


def test_authority_probes_of_a_delegate_use_the_delegations_token_mode():
    """The authority probe asks decide() about a delegated task with the token mode its
    requests have: passthrough for the delegator's token, exchange for its own."""
    spec = tiny_spec()
    world = World(spec)

    def start(ctx, ledger, now):
        if ctx.parent_credential is not None and ctx.task.type == "issue_refund":
            return ctx.parent_credential
        return ledger.issue(ctx.identity, world.roles[ctx.agent.archetype], now, kind="task",
                            task_id=ctx.task.id)

    passed = task(2, BILLING, [act(SQL_WRITE)], type_="issue_refund", depth=1)
    own = task(3, BILLING, [act(SQL_WRITE)], type_="reconcile", depth=1)
    tasks = [task(1, SUPPORT, [act(CRM_READ), Delegation(1.0, passed), Delegation(1.0, own)],
                  type_="refund")]
    spy = Spy(world, start=start)
    log = simulate(workload(spec, tasks), spy)
    assert log.authority is not None and log.authority.probes > 0
    modes: dict[int, Counter] = {}
    for q in spy.asked:
        modes.setdefault(q["task"], Counter())[q["mode"]] += 1
    # Each delegated task: one request of its own, and the probe's questions (every
    # permission, in and out of scope, as the agent and as a thief) in its context.
    n_perms = len(world.all_perms)
    assert set(modes[2]) == {"passthrough"} and modes[2]["passthrough"] >= 1 + 4 * n_perms
    assert set(modes[3]) == {"exchange"} and modes[3]["exchange"] >= 1 + 4 * n_perms
    assert set(modes[1]) == {"none"}


# --------------------------------------------------------------------------- second sample


@pytest.mark.parametrize("delay", [-1.5, math.nan, math.inf])
def test_simpy_backend_names_a_bad_start_delay(delay):
    """The SimPy backend refuses a bad start delay with the Kernel's message, naming it."""

    def sleeper():
        yield 1.0

    with pytest.raises(ValueError, match=rf"sleeper asked to sleep {delay!r} s: a delay must "
                                         r"be a finite number >= 0"):
        SimPyKernel().start(sleeper(), delay)


def test_a_concurrent_agent_never_runs_more_tasks_than_its_slots():
    """An agent of concurrency 2 runs at most 2 tasks at once; a waiting task starts (FCFS)
    when a running one ends."""
    spec = tiny_spec(agents=[dict(MINI["agents"][0], count=1),
                             dict(MINI["agents"][1], count=1, identity="per_task",
                                  concurrency=2)])
    durations = {1: 10.0, 2: 20.0, 3: 5.0, 4: 1.0}
    tasks = [task(tid, BILLING, [act(SQL_READ, duration=d)], type_="reconcile")
             for tid, d in durations.items()]
    tasks.append(task(5, BILLING, [act(SQL_READ, duration=2.0)], arrival=30.0,
                      type_="reconcile"))
    log = simulate(workload(spec, tasks), Spy(World(spec)), probe=False)
    times = {r[T["task"]]: (r[T["start"]], r[T["end"]]) for r in log.tasks}
    # 1 and 2 start on arrival; 3 waits for 1 (ends 10); 4 for the next to end, 3 (at 15);
    # 5 arrives at 30 with both slots free.
    assert times == {1: (0.0, 10.0), 2: (0.0, 20.0), 3: (10.0, 15.0), 4: (15.0, 16.0),
                     5: (30.0, 32.0)}
    # Recount from the task log: never more than 2 running at any moment.
    edges = sorted([(s, 1) for s, _ in times.values()] + [(e, -1) for _, e in times.values()],
                   key=lambda x: (x[0], x[1]))
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak == 2


@pytest.mark.parametrize("path", [[], [Local(Constant(value=0.25))]])
def test_a_crashing_decide_without_a_queue_fails_closed(path):
    """A control with no queueing station whose decide() raises is denied (fail closed)
    instead of ending the run."""
    spec = tiny_spec()

    def boom(req):
        raise KeyError("no rule")

    spy = Spy(World(spec), path=path, verdict=boom)
    steps = [act(CRM_READ, think=2.0), act(DOCS_READ, think=1.0)]
    log = simulate(workload(spec, [task(1, SUPPORT, steps)]), spy, probe=False)
    (row,) = log.actions  # denied, so the task aborts at its first step
    assert (row[A["allowed"]], row[A["reasons"]], row[A["without_decision"]]) == (
        False, "evaluation-error", False)
    assert row[A["latency"]] == (0.25 if path else 0.0)
    assert (log.tasks[0][T["status"]], log.tasks[0][T["end"]]) == (
        "failed", 2.0 + row[A["latency"]])
    assert [(d.allow, d.errors) for d in spy.observed] == [(False, ("KeyError: 'no rule'",))]


def test_a_quarantine_without_credentials_drops_authority_at_the_flag():
    """A flag that quarantines an identity holding no credential is a change point: the
    probe sees the identity's authority drop at once and return at the release."""
    spec = tiny_spec()
    quarantine, delay = 600.0, 10.0
    spy = Spy(World(spec), params={"detector": {"threshold": 0.5, "delay": delay},
                                   "revoke_on_deviation": True, "quarantine": quarantine})
    spy.verdict = lambda req: Decision(not spy.is_quarantined(req), ("q",))
    assert not spy.standing  # nothing to revoke: the ledger never tells the probe
    log = simulate(workload(spec, [task(1, SUPPORT, [act(CRM_READ, duration=1.0, risk=0.9)])]),
                   spy)
    assert log.flagged == {0} and not log.ledger.credentials
    world = World(spec)
    everything = sum(world.weight.values())  # the spy allows every permission unless quarantined
    horizon = 7200.0
    flag = delay + 0.0 + 1.0  # detector delay + latency + duration after the action at 0
    assert spy.quarantined == {"support-0": flag + quarantine}
    # support-0 holds all the weight except while quarantined [11, 611); the read at 0 (1 s)
    # is in use; billing-0 (per-task identity, no task) has no authority.
    assert log.authority.exposure.total == pytest.approx(
        everything * (horizon - quarantine) - world.weight[CRM_READ] * 1.0)
    assert log.authority.standing == pytest.approx(everything * (horizon - 1.0 - quarantine))


def _replay_run(spec):
    """support-0 with a standing credential and a task credential; the task's token replayed
    30 s after the task. Returns (log, requests decide() saw as (time, attested, cred id))."""
    world = World(spec)
    seen: list[tuple[float, bool, int]] = []

    class Standing(Spy):
        standing = True

    def verdict(req):
        seen.append((req.time, req.attested, req.credential.id if req.credential else -1))
        return Decision(True, ("ok",))

    start = task_token(world)

    replay = (InjectedAction(CRM_READ, 30.0, 1.0, 0.0, misuse_id=0, kind="token_replay",
                             goal=True, present=REPLAY),)
    tasks = [task(1, SUPPORT, [act(CRM_READ, think=3.0, duration=2.0)], replay=replay)]
    log = simulate(workload(spec, tasks), Standing(world, verdict=verdict, start=start),
                   probe=False)
    return log, seen


def test_a_replay_after_the_task_presents_the_tasks_credential():
    """An insider replaying a task's token after the task presents that task credential, not
    the identity's standing one."""
    log, seen = _replay_run(tiny_spec())
    standing, task_cred = log.ledger.credentials
    assert (standing.kind, standing.issued) == ("role", 0.0)
    assert (task_cred.kind, task_cred.task_id) == ("task", 1)
    # The task's step at 3 and the replay at task end (5) + 30.
    assert [(r[A["time"]], r[A["kind"]], r[A["credential"]]) for r in log.actions] == [
        (3.0, None, task_cred.id), (35.0, "token_replay", task_cred.id)]
    assert [s[2] for s in seen] == [task_cred.id, task_cred.id]


def test_a_replaying_insider_is_attested():
    """The agent replaying its own token from inside is attested as itself."""
    log, seen = _replay_run(tiny_spec())
    assert [r[A["requester"]] for r in log.actions] == ["agent", "agent"]
    assert [(t, attested) for t, attested, _ in seen] == [(3.0, True), (35.0, True)]


def test_a_step_whose_retries_are_all_denied_stays_denied():
    """After a denied step's retries are denied too (no replan), the step is denied: the task
    fails there (abort) and runs none of its later steps."""
    spec = tiny_spec(behaviour={"on_deny": {"retry": 2, "backoff": "5s", "replan": 0.0}})
    steps = [act(DOCS_READ, think=2.0), act(CRM_READ, think=1.0)]
    spy = Spy(World(spec), verdict=deny_docs)
    log = simulate(workload(spec, [task(1, SUPPORT, steps)]), spy, probe=False)
    # Asked at 2, retried at 7 and 12 (5 s backoff each), all denied; the task fails at 12.
    assert [(r[A["time"]], r[A["source"]], r[A["allowed"]]) for r in log.actions] == [
        (2.0, "plan", False), (7.0, "retry", False), (12.0, "retry", False)]
    assert (log.tasks[0][T["status"]], log.tasks[0][T["end"]]) == ("failed", 12.0)
    assert [q["perm"] for q in spy.asked] == [DOCS_READ] * 3


def test_a_full_queue_counts_each_rejection_once():
    """A station with a bounded queue counts every request it turns away once: as many as
    the action log's queue-full denials."""
    spec = tiny_spec(agents=[dict(MINI["agents"][0], count=1),
                             dict(MINI["agents"][1], count=1, identity="per_task",
                                  concurrency=5)])
    station = pdp(servers=1, service=Constant(value=10.0), max_queue=1)
    tasks = [task(tid, BILLING, [act(SQL_READ)], type_="reconcile") for tid in range(1, 5)]
    tasks.append(task(5, BILLING, [act(SQL_READ)], arrival=25.0, type_="reconcile"))
    log = simulate(workload(spec, tasks), Spy(World(spec), path=[station]), probe=False)
    # At 0: the 1st is served [0, 10), the 2nd waits (served [10, 20)), the 3rd and 4th find
    # the queue full. At 25 the server is free again.
    rows = {r[A["task"]]: (r[A["allowed"]], r[A["latency"]], r[A["reasons"]])
            for r in log.actions}
    assert rows == {1: (True, 10.0, "ok"), 2: (True, 20.0, "ok"),
                    3: (False, 0.0, "pdp-queue-full-fail-closed"),
                    4: (False, 0.0, "pdp-queue-full-fail-closed"), 5: (True, 10.0, "ok")}
    recount = sum("queue-full" in r[A["reasons"]] for r in log.actions)
    assert log.stations["pdp"].rejected == recount == 2


# --------------------------------------------------------------------------- third sample

HTTP_SEND = intern_perm("http", "send", "outbound_mail")


def _recording(seen: list, *fields: str):
    """A verdict that allows everything and records the given request fields."""

    def verdict(req):
        seen.append(tuple(getattr(req, f) for f in fields))
        return Decision(True, ("ok",))

    return verdict


@pytest.mark.parametrize("path", [[], [Local(Uniform(dist="uniform", low=0.01, high=0.02)),
                                       pdp()]], ids=["no-path", "local-checks-first"])
def test_requests_carry_the_resources_the_task_has_read(path):
    """req.read_sources is the set of resources the task read before the request, with and
    without varying local checks in front of the PDP."""
    spec = tiny_spec()
    seen: list = []
    steps = [act(CRM_READ), act(DOCS_READ, think=1.0), act(CRM_WRITE, think=1.0),
             act(CRM_READ, think=1.0)]
    tasks = [task(1, SUPPORT, steps), task(2, BILLING, [act(SQL_READ)], arrival=50.0,
                                           type_="reconcile")]
    spy = Spy(World(spec), path=path, verdict=_recording(seen, "task_id", "read_sources"))
    simulate(workload(spec, tasks), spy, probe=False)
    assert seen == [(1, frozenset()), (1, frozenset({"crm"})), (1, frozenset({"crm", "wiki"})),
                    (1, frozenset({"crm", "wiki"})), (2, frozenset())]


@pytest.mark.parametrize(("platform", "revoked", "refused"),
                         [("first_party", 11.0, 0), ("third_party", None, 1)])
def test_a_per_task_identitys_standing_credential_is_revocable_on_its_own_platform(
        platform, revoked, refused):
    """A standing credential issued at a per-task identity's first request is revocable for a
    first-party agent (a flag revokes it) and not for a third-party one (the revoke is refused)."""
    spec = tiny_spec(agents=[dict(MINI["agents"][0], count=1),
                             dict(MINI["agents"][1], count=1, identity="per_task",
                                  platform=platform)])

    class Standing(Spy):
        standing = True

    spy = Standing(World(spec), params={"detector": {"threshold": 0.5, "delay": 10.0},
                                        "revoke_on_deviation": True})
    tasks = [task(1, BILLING, [act(SQL_READ, duration=1.0, risk=0.9)], type_="reconcile")]
    log = simulate(workload(spec, tasks), spy, probe=False)
    support, billing = log.ledger.credentials  # support-0's from the start, billing-0/t1's
    assert (support.holder, billing.holder, billing.issued) == ("support-0", "billing-0/t1", 0.0)
    assert [q["cred"] for q in spy.asked] == [billing]
    # Flagged at 0 + 10 s delay + 0 s latency + 1 s duration = 11 s.
    assert log.flagged == {0} and spy.quarantined == {"billing-0/t1": 11.0 + 3600.0}
    assert (billing.revoked, log.ledger.revocations_refused) == (revoked, refused)
    assert billing.revocable is (platform == "first_party")


def test_passthrough_and_impersonation_are_not_attested():
    """A delegate presenting its delegator's token and an agent presenting another agent's
    identity are not attested; the agents' own requests are."""
    from simharness.actions import IMPERSONATE

    spec = tiny_spec()
    world = World(spec)

    start = task_token(world)

    sneak = InjectedAction(CRM_READ, 1.0, 1.0, 0.0, misuse_id=0, kind="token_passthrough",
                           goal=True, present=PASSTHROUGH)
    pose = InjectedAction(SQL_WRITE, 1.0, 1.0, 0.0, misuse_id=1, kind="impersonation",
                          goal=True, present=IMPERSONATE, as_agent=BILLING)
    sub = task(2, BILLING, [act(SQL_WRITE), sneak], type_="issue_refund", depth=1)
    tasks = [task(1, SUPPORT, [act(CRM_READ), Delegation(1.0, sub), pose], type_="refund")]
    seen: list = []
    spy = Spy(world, verdict=_recording(seen, "task_id", "identity", "attested"), start=start)
    simulate(workload(spec, tasks), spy, probe=False)
    assert seen == [(1, "support-0", True), (2, "billing-0/t2", True),
                    (2, "support-0", False), (1, "billing-0/t1", False)]


def test_a_send_carries_its_own_data_sensitivity_before_the_tasks():
    """A send that names the sensitivity of its data carries that one (also before any read);
    a send that names none carries the most sensitive data the task has read."""
    spec = tiny_spec()

    def exfil(mid):
        return InjectedAction(HTTP_SEND, 1.0, 1.0, 0.0, misuse_id=mid, kind="exfiltration",
                              goal=True, data_sensitivity="restricted")

    steps = [exfil(0), act(CRM_READ, think=1.0), act(HTTP_SEND, think=1.0), exfil(1)]
    seen: list = []
    spy = Spy(World(spec), verdict=_recording(seen, "action", "data_sensitivity"))
    simulate(workload(spec, [task(1, SUPPORT, steps)]), spy, probe=False)
    assert seen == [("send", "restricted"), ("read", None), ("send", "confidential"),
                    ("send", "restricted")]


def test_a_delegated_request_names_the_top_level_agent_as_chain_origin():
    """Every request of a delegation chain carries the identity of the agent whose top-level
    task it serves; a top-level task's requests carry its own."""
    spec = tiny_spec()
    sub = task(2, BILLING, [act(SQL_WRITE)], type_="issue_refund", depth=1)
    tasks = [task(1, SUPPORT, [act(CRM_READ), Delegation(1.0, sub), act(CRM_WRITE, think=1.0)],
                  type_="refund"),
             task(3, BILLING, [act(SQL_READ)], arrival=100.0, type_="reconcile")]
    seen: list = []
    spy = Spy(World(spec), verdict=_recording(seen, "task_id", "identity", "chain_origin"))
    log = simulate(workload(spec, tasks), spy, probe=False)
    expected = [(1, "support-0", "support-0"), (2, "billing-0/t2", "support-0"),
                (1, "support-0", "support-0"), (3, "billing-0/t3", "billing-0/t3")]
    assert seen == expected
    assert [(r[A["task"]], r[A["identity"]], r[A["chain_origin"]]) for r in log.actions] == expected


def test_the_simpy_backend_runs_on_simpy():
    """backend="simpy" puts the processes on simpy.Environment (the log is the same either way,
    so only the event loop tells them apart)."""
    import simpy

    from simharness.engine import Engine

    spec = tiny_spec()
    wl = workload(spec, [task(1, SUPPORT, [act(CRM_READ)])])
    on_simpy = Engine(wl, Spy(World(spec)), probe=False, backend="simpy")
    assert isinstance(on_simpy.env, SimPyKernel) and isinstance(on_simpy.env.env, simpy.Environment)
    assert isinstance(Engine(wl, Spy(World(spec)), probe=False).env, Kernel)


def test_local_checks_add_up():
    """Two local checks in a row (2 s and 3 s) and a zero-latency PDP: 5 s per request."""
    spec = tiny_spec()
    spy = Spy(World(spec), path=[Local(Constant(value=2.0)), Local(Constant(value=3.0)), pdp()])
    log = simulate(workload(spec, [task(1, SUPPORT, [act(CRM_READ), act(CRM_WRITE)])]), spy,
                   probe=False)
    assert [r[A["latency"]] for r in log.actions] == [5.0, 5.0]


class _Invisible(Spy):
    """A network control that cannot see crm_api calls: they skip its stations."""

    def visible(self, req):
        return req.tool != "crm_api"


def test_an_unseen_request_skips_the_stations_but_not_the_local_checks_after_them():
    """Path [PDP 4 s, local 3 s]: a request the control cannot see takes only the local 3 s;
    one it sees takes 7 s."""
    spec = tiny_spec()
    spy = _Invisible(World(spec), path=[pdp(service=Constant(value=4.0)),
                                        Local(Constant(value=3.0))])
    log = simulate(workload(spec, [task(1, SUPPORT, [act(CRM_READ), act(DOCS_READ)])]), spy,
                   probe=False)
    assert [(r[A["tool"]], r[A["latency"]]) for r in log.actions] == [("crm_api", 3.0),
                                                                      ("docs", 7.0)]


def test_a_cache_hit_still_waits_for_the_local_checks_after_the_pdp():
    """Path [PDP with a cache, local 3 s]: the repeat within the ttl skips the PDP's 0.3 s but
    not the 3 s local check behind it."""
    spec = tiny_spec()
    station = pdp(rtt=Constant(value=0.1), service=Constant(value=0.2), cache_ttl=60.0)
    spy = Spy(World(spec), path=[station, Local(Constant(value=3.0))])
    log = simulate(workload(spec, [task(1, SUPPORT, [act(CRM_READ), act(CRM_READ, think=1.0)])]),
                   spy, probe=False)
    assert [r[A["latency"]] for r in log.actions] == pytest.approx([3.3, 3.0])
    assert len(spy.asked) == 1


def test_reviewers_reject_legitimate_requests_at_their_false_reject_rate():
    """Through the engine, a reviewer rejects an escalated legitimate request with probability
    false_reject (0.3): binomial check of the logged verdicts (the desk's uniforms on [0, 1))."""
    from simharness.loader import load_scenario

    spec = load_scenario("review_capacity", overrides=[
        "horizon=8h", "warmup=0s", "misuse.rate=0", "controls=[human_approval]",
        "controls.human_approval.risk_above=0.0",
        "controls.human_approval.reviewers.reviewers=50",
        "controls.human_approval.reviewers.false_reject=0.3",
        "controls.human_approval.reviewers.service_time=1s"])
    e = spec.control("human_approval")
    log = simulate(build_workload(spec, 0), make(e.name, e.model, e.params, World(spec)),
                   probe=False)
    verdicts = [r[A["review"]] for r in log.actions if r[A["review"]] in ("approved", "rejected")]
    n, rejected = len(verdicts), verdicts.count("rejected")
    assert n > 300
    assert abs(rejected / n - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n), (rejected, n)


def test_a_retry_that_is_allowed_lets_the_task_go_on():
    """The docs read is denied at 2 s and allowed on its retry at 7 s (the control denies it
    before 5 s): the step counts as done and the task completes with its crm read at 9 s."""
    spec = tiny_spec(behaviour={"on_deny": {"retry": 2, "backoff": "5s", "replan": 0.0}})
    steps = [act(DOCS_READ, think=2.0), act(CRM_READ, think=1.0)]

    def early_docs_denied(req):
        ok = req.tool != "docs" or req.time >= 5.0
        return Decision(ok, ("ok" if ok else "docs-denied",))

    spy = Spy(World(spec), verdict=early_docs_denied)
    log = simulate(workload(spec, [task(1, SUPPORT, steps)]), spy, probe=False)
    assert [(r[A["time"]], r[A["source"]], r[A["allowed"]]) for r in log.actions] == [
        (2.0, "plan", False), (7.0, "retry", True), (9.0, "plan", True)]
    assert (log.tasks[0][T["status"]], log.tasks[0][T["end"]]) == ("completed", 10.0)


def test_a_replayed_token_request_has_no_token_mode():
    """A token replay outside any task presents no delegation: token_mode "none" (a recording
    control sees it)."""
    spec = tiny_spec()
    seen: list = []
    world = World(spec)

    start = task_token(world)

    def verdict(req):
        seen.append((req.source, req.token_mode))
        return Decision(True, ("ok",))

    replay = InjectedAction(CRM_READ, 30.0, 1.0, 0.0, misuse_id=0, kind="token_replay",
                            goal=True, present=REPLAY)
    tasks = [task(1, SUPPORT, [act(CRM_READ)], misuse_id=0, kind="token_replay",
                  replay=[replay])]
    simulate(workload(spec, tasks), Spy(world, verdict=verdict, start=start), probe=False)
    assert seen == [("agent", "none"), ("agent", "none")]


def test_a_cache_ttl_under_a_second_still_caches():
    """ttl 0.5 s: a repeat 0.1 s after the first decision is answered from the cache."""
    spec = tiny_spec()
    station = pdp(service=Constant(value=0.2), cache_ttl=0.5)
    spy = Spy(World(spec), path=[station])
    steps = [act(CRM_READ, duration=0.0), act(CRM_READ, think=0.1, duration=0.0)]
    log = simulate(workload(spec, [task(1, SUPPORT, steps)]), spy, probe=False)
    assert [r[A["latency"]] for r in log.actions] == pytest.approx([0.2, 0.0])
    assert len(spy.asked) == 1


# --------------------------------------------------------------------------- fourth sample

LEADING_CHECKS = [Local(Uniform(dist="uniform", low=0.01, high=0.02)), pdp()]


def test_an_action_the_directory_no_longer_grants_is_not_entitled():
    """A stale-authorization action (entitled=False) reaches decide() not entitled although
    its permission is in the agent's role; the agent's own use of it is entitled."""
    spec = tiny_spec()
    stale = InjectedAction(CRM_READ, 1.0, 1.0, 0.0, misuse_id=0, kind="stale_authorization",
                           goal=True, entitled=False)
    seen: list = []
    spy = Spy(World(spec), verdict=_recording(seen, "perm", "entitled"))
    simulate(workload(spec, [task(1, SUPPORT, [act(CRM_READ), stale])]), spy, probe=False)
    assert seen == [(CRM_READ, True), (CRM_READ, False)]


def test_a_passthrough_two_levels_down_presents_its_delegators_holder():
    """A passthrough in a sub-sub-task presents (as identity) the holder of its delegator's
    credential, not the chain's top-level agent."""
    spec = tiny_spec()
    world = World(spec)

    start = task_token(world)

    sneak = InjectedAction(SQL_WRITE, 1.0, 1.0, 0.0, misuse_id=0, kind="token_passthrough",
                           goal=True, present=PASSTHROUGH)
    inner = task(3, SUPPORT, [sneak], type_="answer_ticket", depth=2)
    middle = task(2, BILLING, [act(SQL_READ), Delegation(1.0, inner)], type_="issue_refund",
                  depth=1)
    tasks = [task(1, SUPPORT, [act(CRM_READ), Delegation(1.0, middle)], type_="refund")]
    seen: list = []
    spy = Spy(world, verdict=_recording(seen, "task_id", "identity", "chain_origin"),
              start=start)
    simulate(workload(spec, tasks), spy, probe=False)
    assert seen == [(1, "support-0", "support-0"), (2, "billing-0/t2", "support-0"),
                    (3, "billing-0/t2", "support-0")]


def test_a_renewed_task_credential_restores_the_authority_at_once():
    """With the probe on, a task credential renewed mid-task is probed at the renewal (not
    left at the expired one's empty authority until the task ends)."""
    spec = tiny_spec()
    world = World(spec)

    class Renewing(Spy):
        credential_identity_matters = True  # probe each credential object on its own

        def renew(self, ctx, old, ledger, now):
            return ledger.issue(old.holder, old.perms, now, 10.0, kind="task",
                                task_id=old.task_id)

    start = task_token(world, ttl=10.0)

    def live(req):
        ok = req.credential is not None and req.time < req.credential.expires
        return Decision(ok, ("ok" if ok else "expired",))

    steps = [act(CRM_READ, duration=2.0), act(CRM_READ, think=20.0, duration=2.0),
             act(CRM_READ, think=20.0)]
    spy = Renewing(world, verdict=live, start=start)
    log = simulate(workload(spec, [task(1, SUPPORT, steps)]), spy)
    first, renewed = log.ledger.credentials[:2]
    assert (first.issued, first.expires, renewed.issued, renewed.expires) == (0, 10, 22, 32)
    # Step 2 at 2 + 20 = 22 (renewal then); the probe asks about every permission with the
    # renewed credential at 22, beside the step's own request.
    at_renewal = {q["perm"] for q in spy.asked if q["cred"] is renewed and q["time"] == 22.0}
    assert at_renewal == set(world.all_perms)


def test_a_delegated_request_behind_leading_local_checks_names_the_chain_origin():
    """With varying local checks before the PDP (the queued path), a delegated sub-task's
    requests still carry the top-level agent's identity as chain origin."""
    spec = tiny_spec()
    sub = task(2, BILLING, [act(SQL_WRITE)], type_="issue_refund", depth=1)
    tasks = [task(1, SUPPORT, [act(CRM_READ), Delegation(1.0, sub)], type_="refund")]
    seen: list = []
    spy = Spy(World(spec), path=LEADING_CHECKS,
              verdict=_recording(seen, "task_id", "identity", "chain_origin"))
    simulate(workload(spec, tasks), spy, probe=False)
    assert seen == [(1, "support-0", "support-0"), (2, "billing-0/t2", "support-0")]


@pytest.mark.parametrize("platform", ["first_party", "third_party"])
def test_a_replay_without_a_credential_gets_a_standing_one_revocable_on_its_platform(platform):
    """An insider replay of a task that presented no credential is given the identity's
    standing credential, issued then, revocable only for a first-party agent."""
    spec = tiny_spec(agents=[dict(MINI["agents"][0], count=1),
                             dict(MINI["agents"][1], count=1, identity="per_task",
                                  platform=platform)])

    class Standing(Spy):
        standing = True

    # depth 0: the passthrough presents no credential, so none is issued in the task
    sneak = InjectedAction(SQL_READ, 0.0, 1.0, 0.0, misuse_id=0, kind="token_passthrough",
                           goal=True, present=PASSTHROUGH)
    replay = (InjectedAction(SQL_READ, 30.0, 1.0, 0.0, misuse_id=1, kind="token_replay",
                             goal=True, present=REPLAY),)
    tasks = [task(1, BILLING, [sneak], type_="reconcile", replay=replay)]
    spy = Standing(World(spec))
    log = simulate(workload(spec, tasks), spy, probe=False)
    support, billing = log.ledger.credentials
    # The task ends at 0 + 1 s; the replay 30 s later.
    assert (support.holder, billing.holder, billing.issued) == ("support-0", "billing-0/t1", 31.0)
    assert [q["cred"] for q in spy.asked] == [None, billing]
    assert billing.revocable is (platform == "first_party")


def test_a_model_with_only_one_task_hook_has_it_called_for_every_task():
    """The engine skips the task hooks of models that keep both base no-ops; a model that
    overrides just one of them still has it called at every task start (or end)."""
    from simharness.controls.base import World
    from simharness.controls.static_iam import StaticIAM
    from simharness.engine import T, simulate
    from simharness.loader import load_scenario
    from simharness.workload import build_workload

    spec = load_scenario("baseline", overrides=["horizon=1h"])
    calls: list[str] = []

    class StartOnly(StaticIAM):
        def on_task_start(self, ctx, ledger, now):
            calls.append("start")
            return super().on_task_start(ctx, ledger, now)

    class EndOnly(StaticIAM):
        def on_task_end(self, ctx, cred, ledger, now):
            calls.append("end")

    for model, kind in ((StartOnly, "start"), (EndOnly, "end")):
        calls.clear()
        log = simulate(build_workload(spec, 0), model("x", {}, World(spec)))
        started = len(log.tasks)
        ended = sum(1 for r in log.tasks if r[T["status"]] != "in_flight")
        assert started > 10 and calls == [kind] * (started if kind == "start" else ended)
