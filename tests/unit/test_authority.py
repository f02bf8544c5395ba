"""Exposure as authority (issue 14): probing the control's own decide() must agree with closed
forms where they exist, measure any policy the same way, and leave the run untouched."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from simharness import metrics
from simharness.authority import AuthorityProbe, Cumulative, pack_span
from simharness.controls.base import World, make
from simharness.controls.static_iam import StaticIAM
from simharness.engine import A, simulate
from simharness.loader import load_scenario
from simharness.spec import ScenarioSpec
from simharness.workload import build_workload
from tests.conftest import MINI

ZERO_PDP = {"servers": math.inf, "rtt": 0, "service_time": 0, "timeout": "inf"}


def plain_spec(**changes) -> ScenarioSpec:
    """Two archetypes without delegation, plans followed, no misuse: exact comparisons."""
    data = {**MINI, "horizon": "6h", "warmup": "30m"}
    data["agents"] = [dict(MINI["agents"][0], tasks={"answer_ticket": 1}), MINI["agents"][1]]
    data.update(changes)
    return ScenarioSpec.model_validate(data)


def run(spec: ScenarioSpec, model: str, params: dict | None = None, rep: int = 0, **kw):
    log = simulate(build_workload(spec, rep), make(model, model, params or {}, World(spec)), **kw)
    return log, metrics.compute(log)


def policy_file(tmp_path, default: str) -> str:
    path = tmp_path / f"{default}.yaml"
    path.write_text(yaml.safe_dump({"policy_version": 1, "default": default, "rules": []}))
    return str(path)


def test_static_iam_authority_is_its_credential_exposure():
    log, m = run(plain_spec(), "static_iam")
    assert m["exposure"] > 0
    assert m["exposure"] == pytest.approx(m["credential_exposure"], rel=1e-9)
    # Closed form: every agent holds its role for the whole measured window, minus use.
    spec = plain_spec()
    roles = World(spec).roles
    w = World(spec).weight
    held = sum(sum(w[p] for p in roles[a.archetype]) for a in log.workload.agents)
    in_use = sum(r[A["weight"]] * _inside(r, spec) for r in log.actions if r[A["allowed"]])
    assert m["exposure"] == pytest.approx(held * (spec.horizon - spec.warmup) - in_use, rel=1e-9)


def _inside(r, spec) -> float:
    start = r[A["time"]] + r[A["latency"]]
    return max(0.0, min(start + r[A["duration"]], spec.horizon) - max(start, spec.warmup))


def test_jit_at_permission_granularity_equals_its_credential_exposure():
    params = {"granularity": "permission", "revoke_on_complete": True, "ttl": "5m"}
    _, m = run(plain_spec(), "jit_per_task", params)
    assert m["exposure"] > 0
    assert m["exposure"] == pytest.approx(m["credential_exposure"], rel=1e-9)


def test_unrevoked_tokens_keep_authority_until_they_expire():
    params = {"granularity": "permission", "revoke_on_complete": False, "ttl": "5m"}
    _, kept = run(plain_spec(), "jit_per_task", params)
    _, revoked = run(plain_spec(), "jit_per_task", {**params, "revoke_on_complete": True})
    # A token left live after its task is still the agent's to present (token_replay): its
    # authority counts until expiry. Overlapping tokens of one agent count once (a union),
    # which the credential ledger counts once per token.
    assert kept["exposure"] > 2 * revoked["exposure"]
    assert kept["exposure"] <= kept["credential_exposure"] * (1 + 1e-9)


def test_allow_all_policy_is_none_and_deny_all_is_zero(tmp_path):
    spec = plain_spec()
    _, none = run(spec, "none")
    _, allow = run(spec, "per_action_policy", {"policy": policy_file(tmp_path, "allow"),
                                                "pdp": ZERO_PDP})
    _, deny = run(spec, "per_action_policy", {"policy": policy_file(tmp_path, "deny"),
                                               "pdp": ZERO_PDP})
    assert none["exposure"] > 0 and none["credential_exposure"] > 0
    assert allow["exposure"] == pytest.approx(none["exposure"], rel=1e-12)
    assert allow["blast_radius"] == pytest.approx(none["blast_radius"], rel=1e-12)
    assert allow["credential_exposure"] == 0  # it issues nothing: the old measure said 0
    assert deny["exposure"] == 0 and deny["blast_radius"] == 0


def test_shipped_policy_on_the_plan_is_jit_per_permission_within_latency_terms():
    spec = plain_spec()
    _, jit = run(spec, "jit_per_task", {"granularity": "permission"})
    _, pap = run(spec, "per_action_policy", {"detector": None, "revoke_on_deviation": False})
    assert pap["exposure"] == pytest.approx(jit["exposure"], rel=0.02)


def test_quarantine_takes_authority_away_until_release():
    # A detector that flags every action quarantines the identity: static_iam's credential is
    # revoked at the flag and a new one is issued only after the quarantine ends.
    spec = plain_spec(signals={"risk": {"benign": 0.95, "misuse": 0.95}})
    params = {"detector": {"threshold": 0.5, "delay": "1s"}, "revoke_on_deviation": True,
              "quarantine": "1h"}
    _, flagged = run(spec, "static_iam", params)
    _, free = run(spec, "static_iam")
    assert 0 < flagged["exposure"] < 0.05 * free["exposure"]
    # The ledger cuts a step's use at the revocation, authority counts the whole step: within
    # a few step-seconds of each other.
    assert flagged["exposure"] == pytest.approx(flagged["credential_exposure"], rel=0.01)


def test_probing_changes_nothing_in_the_run():
    spec = load_scenario("baseline", overrides=["horizon=2h", "warmup=0s"])
    for name in ("static_iam", "jit_per_task", "per_action_policy"):
        e = spec.control(name)
        logs = [simulate(build_workload(spec, 0), make(e.name, e.model, e.params, World(spec)),
                         probe=p).actions for p in (True, False)]
        assert logs[0] == logs[1], name


def test_blast_radius_needs_what_a_thief_can_use(tmp_path):
    spec = plain_spec()
    _, static = run(spec, "static_iam")
    # A role that never expires: a thief keeps W(role) until the horizon.
    roles, w = World(spec).roles, World(spec).weight
    widest = max(sum(w[p] for p in role) for role in roles.values())
    assert 0 < static["blast_radius"] <= widest * (spec.horizon - spec.warmup)
    # per_action_policy asks for attestation: a thief outside gets nothing.
    _, pap = run(spec, "per_action_policy", {"pdp": ZERO_PDP})
    assert pap["blast_radius"] == 0 and pap["exposure"] > 0


def test_probes_are_memoised_per_context_not_per_task():
    # Under a plan-following scenario every task of a type shows the control the same context,
    # so decide() is asked once per distinct context, not once per task.
    spec = plain_spec(horizon="48h")
    log, _ = run(spec, "per_action_policy", {"pdp": ZERO_PDP})
    n_perms = len(World(spec).all_perms)
    tasks = len(list(log.workload.iter_tasks()))
    contexts = len(log.workload.agents) * 3  # idle, one task type each, its ended task
    assert log.authority.probes <= 2 * 2 * n_perms * contexts  # in/out of scope, thief or not
    assert tasks * n_perms > 10 * log.authority.probes


def test_cumulative_curve_against_brute_force():
    rng = __import__("numpy").random.default_rng(3)
    acc = Cumulative(10.0, 110.0, points=11)
    spans = []
    for _ in range(200):
        a = float(rng.uniform(10, 110))
        b = min(110.0, a + float(rng.exponential(15)))
        w = float(rng.normal())
        if b > a:
            acc.add(a, b, w)
            spans.append((a, b, w))
        if len(spans) % 37 == 0:  # folded into the bins now and then, as a run does
            acc.fold()
    acc.fold(np.array([20.0]), np.array([30.0]), np.array([2.0]))  # and given as arrays
    spans.append((20.0, 30.0, 2.0))
    assert not acc.pending  # nothing held after a fold
    grid, curve = acc.curve()
    for g, c in zip(grid, curve, strict=True):
        brute = sum(w * max(0.0, min(b, g) - a) for a, b, w in spans)
        assert c == pytest.approx(brute, abs=1e-9)
    assert acc.total == pytest.approx(sum(w * (b - a) for a, b, w in spans), abs=1e-9)
    assert math.isclose(curve[-1], acc.total)



@pytest.mark.parametrize("model, params", [
    ("static_iam", {}), ("jit_per_task", {"granularity": "permission", "ttl": "5m"})])
def test_a_stack_of_one_is_its_member(model, params):
    """layered([X]) holds X's authority and decides as X (an independent run of X is the
    oracle), so composing adds nothing of its own."""
    spec = plain_spec()
    _, alone = run(spec, model, params)
    _, stacked = run(spec, "layered", {"members": [{"model": model, "params": params}]})
    for key in ("exposure", "credential_exposure", "executed_actions", "actions_denied", "actions"):
        assert stacked[key] == pytest.approx(alone[key], rel=1e-12), key
    assert alone["exposure"] > 0


SCENARIOS = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("name", SCENARIOS)
def test_short_cuts_give_the_general_paths_numbers_exactly(name, monkeypatch):
    """The probe's common-case short cuts (a task under the standing identity, the previous
    task's probe copied, the last union reused) against its general path alone, on every
    shipped scenario and control: the same exposure curve, standing part, blast radius terms
    and decide() count, to the last bit."""
    spec = load_scenario(name, overrides=["horizon=1h"])
    for e in spec.controls:
        found = []
        for shortcuts in (True, False):
            monkeypatch.setattr(AuthorityProbe, "shortcuts", shortcuts)
            a = simulate(build_workload(spec, 0), make(e.name, e.model, e.params, World(spec))
                         ).authority
            found.append((a.exposure.curve()[1].tobytes(), a.standing, a.blast_num,
                          a.blast_den, a.probes))
        assert found[0] == found[1], (name, e.name)


class _RevokeAtStart(StaticIAM):
    """static_iam whose task start revokes the agent's standing credential (reissued at its
    next request): the start hook changes what the standing identity may do."""

    model = "revoke_at_start_test"

    def on_task_start(self, ctx, ledger, now):
        cred = self._standing.get(ctx.identity)
        if cred is not None:
            ledger.revoke(cred, now)
        return None


class _RevokeAtEnd(StaticIAM):
    """The same at the task's end."""

    model = "revoke_at_end_test"

    def on_task_end(self, ctx, cred, ledger, now):
        standing = self._standing.get(ctx.identity)
        if standing is not None:
            ledger.revoke(standing, now)


@pytest.mark.parametrize("model", [_RevokeAtStart, _RevokeAtEnd], ids=["start", "end"])
def test_short_cuts_probe_the_standing_identity_again_when_a_hook_changed_it(model,
                                                                             monkeypatch):
    """The common case still sees a change a task's start or end hook made to the agent's
    own identity: the general path's numbers, and less authority than plain static_iam."""
    spec = plain_spec()
    found = []
    for shortcuts in (True, False):
        monkeypatch.setattr(AuthorityProbe, "shortcuts", shortcuts)
        log = simulate(build_workload(spec, 0), model("r", {}, World(spec)))
        found.append((log.authority.exposure.total, log.authority.standing))
    assert found[0] == found[1]
    plain, _ = run(spec, "static_iam")
    assert found[0][0] < plain.authority.exposure.total


# -- the probe on its own: change points outside a task's hooks, hand-worked ------------------
def _probe_alone(model: str = "static_iam", control=None, world=None,
                 expires: float = math.inf):
    """A probe over plain_spec's agents with their standing credentials issued at 0 (to
    expire at `expires`)."""
    from simharness.controls.base import Ledger

    spec = plain_spec()
    world = world or World(spec)
    ctl = control or make(model, model, {}, world)
    agents = build_workload(spec, 0).agents
    ledger = Ledger(world.weight)
    probe = AuthorityProbe(ctl, world, agents, 0.0, 100.0)
    for a in agents:  # before the probe hears of them: start() probes each as it stands
        ctl.credential_for(a.standing_identity, a.archetype, True, ledger, 0.0).expires = expires
    ledger.on_change = probe.changed
    probe.start(0.0)
    role = sum(world.weight[p] for p in world.roles[agents[0].archetype])
    return probe, ctl, ledger, agents[0], role


def test_a_revocation_outside_a_task_hook_counts_from_its_instant():
    """static_iam: agent 0 holds its role's weight W from 0; its credential is revoked at 40
    (a change outside any task start or end): authority W x 40, then 0 to the horizon 100."""
    probe, ctl, ledger, agent, role = _probe_alone()
    assert role > 0 and probe.current(0).weight == role
    assert ledger.revoke(ctl.standing_credential(agent.standing_identity), 40.0)
    assert probe.current(0).weight == 0.0  # probed at once, at the revocation instant
    probe._advance(0, 100.0)
    a, b, w = probe.intervals()
    mine = [(float(x), float(y), float(z)) for x, y, z in zip(a, b, w, strict=True)
            if z == role and x == 0.0]
    assert mine == [(0.0, 40.0, role)]


class _RiskAware(StaticIAM):
    """Allows in-role requests only when their risk score reads below 0.5 (a probe asks with
    risk 0: the least suspicious request)."""

    def decide(self, req):
        d = super().decide(req)
        return d if req.risk < 0.5 else type(d)(False, ("risky",))


def test_probes_ask_with_a_zero_risk_score():
    """A control that reads the request's risk sees 0.0 from a probe, so its authority is the
    role's whole weight (a missing risk would make every probe fail and read as no authority)."""
    spec = plain_spec()
    probe, *_, role = _probe_alone(control=_RiskAware("r", {}, World(spec)))
    assert probe.current(0).weight == role > 0


@pytest.mark.parametrize("points, grid", [(1, [10.0]), (2, [10.0, 110.0]), (3, [10.0, 60.0, 110.0])])
def test_a_cumulative_curve_of_one_two_or_three_points(points, grid):
    """Hand-worked: 2 over [20, 70) and -1 over [50, 110): total 100 - 60 = 40; at 60 the sum
    is 2 x 40 - 1 x 10 = 70. One point holds only the total."""
    acc = Cumulative(10.0, 110.0, points=points)
    acc.add(20.0, 70.0, 2.0)
    acc.add(50.0, 110.0, -1.0)
    g, c = acc.curve()
    assert g.tolist() == grid
    assert c.tolist() == {1: [40.0], 2: [0.0, 40.0], 3: [0.0, 70.0, 40.0]}[points]
    assert acc.total == 40.0


# -- probe fidelity and the memo's keys, against plug-in controls ------------------------------
from simharness.actions import Task  # noqa: E402
from simharness.authority import Context  # noqa: E402
from simharness.controls.base import Decision, TaskContext  # noqa: E402


class _Recorder(StaticIAM):
    """Allows every request and records the fields of each probe it is asked."""

    model = "recorder_test"

    def __init__(self, *args):
        super().__init__(*args)
        self.seen: list[tuple] = []

    def decide(self, req):
        self.seen.append((req.identity, req.identity_mode, req.source, req.attested, req.tool,
                          req.action, req.resource, req.perm, req.task_id, req.task_type,
                          req.task_active, req.chain_depth, req.chain_origin, req.token_mode,
                          req.credential, req.in_scope))
        return Decision(True, ("all",))


def _task_context(agent, identity: str, task_id: int, kind: str, depth: int = 0,
                  declared: frozenset = frozenset(), origin: str | None = None,
                  mode: str = "none", cred=None) -> Context:
    """A hand-built context of a task of agent's (what the engine hands probe.enter)."""
    task = Task(task_id, kind, agent.index, 0.0, [], frozenset(), depth, declared=declared)
    ctx = TaskContext(task, agent, identity, None, depth, True)
    return Context(identity, ctx, cred, origin or identity, agent.role, mode)


def test_probe_requests_carry_the_context_they_measure():
    """Probes carry the agent's identity mode, source, attestation and the context's task fields."""
    world = World(plain_spec())
    ctl = _Recorder("r", {}, world)
    probe, _, ledger, agent, _ = _probe_alone(control=ctl)
    ident = agent.standing_identity
    cred = ctl.standing_credential(ident)
    every = {(p[0], p[1], world.resources[p[2]], p) for p in world.all_perms}

    def asked(rows):
        return {(r[4], r[5], r[6], r[7]) for r in rows}

    def check(fields):
        mine = [r for r in ctl.seen if r[0] == ident]
        ctl.seen.clear()
        for source, attested in (("agent", True), ("external", False)):
            rows = [r for r in mine if r[2] == source]
            assert len(rows) == 2 * len(every), source
            assert asked(rows) == every
            assert {r[15] for r in rows} == {True, False}
            assert {(r[1], r[3], *r[8:15]) for r in rows} == {
                ("per_agent", attested, *fields)}
        assert len(mine) == 4 * len(every)

    assert agent.identity_mode == "per_agent"
    check((-1, "", False, 0, ident, "none", cred))  # between tasks
    probe.enter(0, _task_context(agent, ident, 7, "answer_ticket"), 50.0)
    check((7, "answer_ticket", True, 0, ident, "none", cred))
    sub = _task_context(agent, ident, 9, "lookup", depth=2, origin="billing-1", mode="exchange")
    probe.enter(0, sub, 60.0)
    check((9, "lookup", True, 2, "billing-1", "exchange", cred))


class _ByTaskType(StaticIAM):
    """Allows every request of a task of type answer_ticket, nothing else."""

    def decide(self, req):
        return Decision(req.task_type == "answer_ticket", ("type",))


def test_authority_depends_on_the_task_type_when_the_decision_does():
    """Two tasks alike but for their type: allowed everything, then nothing."""
    world = World(plain_spec())
    probe, _, _, agent, _ = _probe_alone(control=_ByTaskType("t", {}, world))
    ident, everything = agent.standing_identity, sum(world.weight.values())
    assert probe.current(0).weight == 0.0
    first = _task_context(agent, ident, 1, "answer_ticket")
    probe.enter(0, first, 10.0)
    assert probe.current(0).weight == pytest.approx(everything)
    probe.leave(0, first, 20.0)
    assert probe.current(0).weight == 0.0
    probe.enter(0, _task_context(agent, ident, 2, "refund"), 30.0)
    assert probe.current(0).weight == 0.0


class _ScopeOnly(StaticIAM):
    """Allows the agent (not a thief) only in-role requests within the declared scope."""

    def decide(self, req):
        d = super().decide(req)
        return d if req.in_scope and req.source == "agent" else type(d)(False, ("scope",))


def test_two_tasks_of_a_type_with_different_scopes_get_their_own_authority():
    """The same task type declaring {p} then {q}: authority {p}, then {q}, nothing between."""
    world = World(plain_spec())
    probe, _, _, agent, _ = _probe_alone(control=_ScopeOnly("s", {}, world))
    ident = agent.standing_identity
    p, q = sorted(agent.role)[:2]
    assert set(probe.current(0).allowed) == frozenset()
    for k, (t, declared) in enumerate(((10.0, frozenset({p})), (30.0, frozenset({q})))):
        c = _task_context(agent, ident, k, "answer_ticket", declared=declared)
        probe.enter(0, c, t)
        assert set(probe.current(0).allowed) == declared
        assert probe.current(0).weight == world.weight[declared and next(iter(declared))]
        probe.leave(0, c, t + 5.0)
        assert set(probe.current(0).allowed) == frozenset()


class _FirstCredentialOnly(StaticIAM):
    """Allows in-role requests only with the first credential object seen for an identity."""

    credential_identity_matters = True

    def __init__(self, *args):
        super().__init__(*args)
        self.first: dict[str, object] = {}

    def decide(self, req):
        d = super().decide(req)
        first = self.first.setdefault(req.identity, req.credential)
        return d if req.credential is first else type(d)(False, ("not-first",))


def test_a_control_keyed_by_credential_object_is_probed_per_object():
    """A like-for-like reissue at 40 is another object: role weight before, 0 after."""
    world = World(plain_spec())
    probe, ctl, ledger, agent, role = _probe_alone(control=_FirstCredentialOnly("f", {}, world))
    ident = agent.standing_identity
    old = ctl.standing_credential(ident)
    assert probe.current(0).weight == role > 0
    assert ledger.revoke(old, 40.0)
    new = ctl.credential_for(ident, agent.archetype, True, ledger, 40.0)
    assert new is not old and new.perms == old.perms
    assert probe.current(0).weight == 0.0


def test_a_quarantine_with_no_credential_change_drops_authority_until_release():
    """static_iam quarantined over [40, 70), credential untouched: W over [0, 40), [70, 100)."""
    probe, ctl, _, agent, role = _probe_alone()
    ctl.quarantined[agent.standing_identity] = 70.0
    probe.changed(agent.standing_identity, 40.0)
    assert probe.current(0).weight == 0.0
    probe._advance(0, 100.0)
    assert probe.current(0).weight == role
    mine = [(a, b) for a, b, w in zip(*probe.intervals(), strict=True) if w == role
            and a in (0.0, 70.0)]
    assert mine == [(0.0, 40.0), (70.0, 100.0)]


def test_an_expired_credential_schedules_no_further_change_point():
    """A probe starting at 60 over a credential that expired at 50: no authority, next change never."""
    from simharness.controls.base import Ledger

    spec = plain_spec()
    world = World(spec)
    ctl = make("static_iam", "static_iam", {}, world)
    agents = build_workload(spec, 0).agents
    ledger = Ledger(world.weight)
    probe = AuthorityProbe(ctl, world, agents, 0.0, 100.0)
    ident = agents[0].standing_identity
    ctl._standing[ident] = ledger.issue(ident, world.roles[agents[0].archetype], 0.0, ttl=50.0)
    probe.start(60.0)
    assert probe.current(0).weight == 0.0 and probe.current(0).valid_until == math.inf


def test_a_credential_expiring_as_a_task_starts_gives_the_task_nothing():
    """static_iam: a standing credential expiring at 50 as a task starts at 50 gives 0 at 50."""
    probe, ctl, ledger, agent, role = _probe_alone()
    ident = agent.standing_identity
    ctl._standing[ident] = ledger.issue(ident, ctl.standing_credential(ident).perms, 0.0,
                                        ttl=50.0, notify=False)
    ledger.notify(ident, 0.0)
    assert probe.current(0).weight == role and probe.current(0).valid_until == 50.0
    probe.enter(0, _task_context(agent, ident, 1, "answer_ticket"), 50.0)
    assert probe.current(0).weight == 0.0


class _OfflineToken(StaticIAM):
    """Verifies tokens offline: a credential is good until it expires, revoked or not."""

    def decide(self, req):
        cred = req.credential
        ok = cred is not None and req.time < cred.expires and req.perm in cred.perms
        return type(super().decide(req))(ok, ("offline-ok" if ok else "offline-deny",))


def test_a_revoked_credential_still_loses_its_authority_at_expiry():
    """A control that ignores revocation but checks expiry: the credential (ttl 50) revoked at
    40 keeps its authority until 50 and has none from then (the probe must still look again
    at the expiry of a revoked credential)."""
    from simharness.controls.base import Ledger

    spec = plain_spec()
    world = World(spec)
    ctl = _OfflineToken("o", {}, world)
    agents = build_workload(spec, 0).agents
    ledger = Ledger(world.weight)
    probe = AuthorityProbe(ctl, world, agents, 0.0, 100.0)
    ledger.on_change = probe.changed
    ident = agents[0].standing_identity
    cred = ctl._standing[ident] = ledger.issue(ident, world.roles[agents[0].archetype], 0.0,
                                               ttl=50.0, notify=False)
    probe.start(0.0)
    role = sum(world.weight[p] for p in world.roles[agents[0].archetype])
    assert probe.current(0).weight == role > 0
    ledger.revoke(cred, 40.0)
    assert probe.current(0).weight == role  # revocation ignored by this control
    probe._advance(0, 100.0)
    assert probe.current(0).weight == 0.0
    mine = sorted((float(a), float(b)) for a, b, w in zip(*probe.intervals(), strict=True)
                  if w == role)
    assert mine == [(0.0, 40.0), (40.0, 50.0)]


# -- the hot path's mechanisms: context reuse, deferred sums, spilling --------------------------
_DECLARED: frozenset = frozenset()  # one object, as a workload shares it among a type's tasks


def _begin(probe, agent, task_id: int, t: float, kind: str = "answer_ticket") -> Context:
    """Start a task of agent 0 as the engine does (hold, then begin)."""
    ident = agent.standing_identity
    task = Task(task_id, kind, agent.index, 0.0, [], frozenset(), 0, declared=_DECLARED)
    probe.hold()
    return probe.begin(0, ident, TaskContext(task, agent, ident, None, 0, True), None, ident,
                       agent.role, "none", t)


def _end(probe, c: Context, t: float) -> None:
    probe.hold()
    probe.leave(0, c, t)


def test_begin_reuses_the_previous_tasks_context_until_something_changes():
    """A task like the agent's previous one, nothing changed since: the same Context object,
    now carrying the new task, and the same authority. After a revocation the next task gets a
    context of its own, probed afresh."""
    probe, ctl, ledger, agent, role = _probe_alone()
    first = _begin(probe, agent, 1, 10.0)
    _end(probe, first, 20.0)
    second = _begin(probe, agent, 2, 30.0)
    assert second is first and second.ctx.task.id == 2
    assert probe.current(0).weight == role
    _end(probe, second, 40.0)
    assert ledger.revoke(ctl.standing_credential(agent.standing_identity), 45.0)
    third = _begin(probe, agent, 3, 50.0)
    assert third is not first and probe.current(0).weight == 0.0
    fourth = _begin(probe, agent, 4, 60.0, kind="refund")  # another context running: general
    assert fourth is not third


def test_the_fast_paths_switch_only_what_the_engine_reads_and_settle_writes_the_rest():
    """Between a fast begin and leave only `allowed` (read once per action) moves and the
    instant is recorded (`marks`); `current` reads the rest from what _remember kept without
    closing the fast path, and _settle writes it out and integrates the marks (then closes
    it), as the general path would have."""
    world = World(plain_spec())
    probe, _, _, agent, _ = _probe_alone(control=_ByTaskType("t", {}, world))
    everything = sum(world.weight.values())  # in an answer_ticket task; nothing between
    first = _begin(probe, agent, 1, 10.0)  # probed: every field written
    st = probe.state[0]
    assert (st.weight, st.tasks) == (pytest.approx(everything), (first,))
    _end(probe, first, 20.0)  # the fast path
    assert st.fast is not None and (st.last, st.marks) == (10.0, [20.0])
    assert set(st.allowed) == set()
    assert st.weight == pytest.approx(everything) and st.tasks == (first,)  # left as they were
    assert (probe.current(0).weight, probe.current(0).tasks) == (0.0, ())
    second = _begin(probe, agent, 2, 30.0)  # the fast path: the context reused
    assert second is first and st.fast is first and st.marks == [20.0, 30.0]
    assert set(st.allowed) == set(world.weight)  # the engine's use test reads this
    now = probe.current(0)
    assert now.weight == pytest.approx(everything) and now.tasks == (first,)
    assert st.fast is first  # reading it closed nothing
    _end(probe, second, 40.0)
    assert probe.current(0).weight == 0.0 and st.weight == pytest.approx(everything)
    probe._settle(0)
    assert (st.weight, st.tasks, st.fast, st.last, st.marks) == (0.0, (), None, 40.0, [])
    # [10, 20) and [30, 40) in the task, nothing between
    assert [s[:3] for s in st.spans] == [(10.0, 20.0, pytest.approx(everything)),
                                         (30.0, 40.0, pytest.approx(everything))]
    assert st.valid_until == math.inf
    assert probe.current(0) == (st.allowed, st.weight, st.thief, st.life_end, st.valid_until,
                                st.tasks)


def test_a_change_during_a_fast_path_task_is_probed_at_its_instant():
    """A task begun by the fast path leaves the probe taking changes as they come: a
    revocation at 35 takes the role's authority away at 35, not at the task's end."""
    probe, ctl, ledger, agent, role = _probe_alone()
    first = _begin(probe, agent, 1, 10.0)
    _end(probe, first, 20.0)
    assert _begin(probe, agent, 2, 30.0) is first  # the fast path
    assert probe.current(0).weight == role
    assert ledger.revoke(ctl.standing_credential(agent.standing_identity), 35.0)
    assert probe.current(0).weight == 0.0


def test_a_task_ending_the_instant_it_began_by_the_fast_path_adds_no_interval():
    """A zero-length task (begin and leave at 30, the fast path both times): its marks give
    no span, not even an empty one; the others are integrated as they were."""
    probe, _, _, agent, role = _probe_alone()
    first = _begin(probe, agent, 1, 10.0)
    _end(probe, first, 20.0)
    second = _begin(probe, agent, 2, 30.0)
    _end(probe, second, 30.0)
    st = probe.state[0]
    assert second is first and st.fast is not None and st.marks == [20.0, 30.0, 30.0]
    probe._expand(st)
    assert [s[:3] for s in st.spans] == [(0.0, 10.0, role), (10.0, 20.0, role),
                                         (20.0, 30.0, role)]
    assert (st.last, st.marks) == (30.0, []) and st.fast is not None  # still open


@pytest.mark.parametrize("begin_at", [30.0, 22.0])
def test_an_expiry_at_the_instant_a_fast_path_would_run_takes_the_general_path(begin_at):
    """The standing credential expires at 30: a task like the previous one beginning at 30,
    or one begun at 22 ending at 30, is probed at 30 (authority 0), not carried over."""
    probe, _, _, agent, role = _probe_alone(expires=30.0)
    first = _begin(probe, agent, 1, 10.0)
    _end(probe, first, 20.0)
    second = _begin(probe, agent, 2, begin_at)
    if begin_at < 30.0:
        assert second is first and probe.current(0).weight == role  # the fast path
        _end(probe, second, 30.0)
    assert probe.current(0).weight == 0.0 and not probe.current(0).allowed


class _AgentAlways(StaticIAM):
    """Allows the agent everything in its role at any time, a thief nothing."""

    def decide(self, req):
        d = super().decide(req)
        return d if req.source == "agent" else type(d)(False, ("agent only",))


class _ThiefOnly(StaticIAM):
    """Allows a thief what the role allows, the agent itself nothing."""

    def decide(self, req):
        d = super().decide(req)
        return d if req.source != "agent" else type(d)(False, ("thief only",))


@pytest.mark.parametrize("control", [_AgentAlways, _ThiefOnly])
def test_the_fast_paths_give_the_general_paths_numbers_between_small_tasks(control,
                                                                          monkeypatch):
    """Authority between tasks held only by the agent, or only by a thief, and weights small
    enough that a whole role weighs less than 1 (cases the shipped scenarios lack): the fast
    paths of begin and leave integrate exactly what the general path does."""
    found = []
    for shortcuts in (True, False):
        monkeypatch.setattr(AuthorityProbe, "shortcuts", shortcuts)
        world = World(plain_spec())
        world.weight = {p: 0.01 for p in world.weight}
        probe, _, _, agent, _ = _probe_alone(control=control("c", {}, world), world=world)
        assert 0 < probe.current(0).weight + probe.current(0).thief <= 1
        for k in range(4):
            c = _begin(probe, agent, k, 10.0 + 20 * k)
            _end(probe, c, 15.0 + 20 * k)
        r = probe.finish()
        found.append((r.exposure.total, r.standing, r.blast_num, r.blast_den))
    assert found[0] == found[1]
    assert found[0][1 if control is _AgentAlways else 2] > 0  # the between-task part counted


def test_a_span_clips_a_thiefs_window_to_the_warm_up_and_ends_it_at_the_credentials_end():
    """A thief authority 2 held over [5, 20), warm-up 10, what it steals working until 50:
    blast terms 2 x ((50 - 10)^2 - (50 - 20)^2) / 2 = 700 over 10 time units."""
    probe, *_ = _probe_alone()
    probe.lo = 10.0
    probe._sum(5.0, 20.0, 0.0, 2.0, 50.0, False)
    assert probe._blast_terms == [700.0, 10.0]


def test_a_span_with_no_thief_authority_adds_no_blast_time_and_one_past_the_horizon_is_cut():
    """Authority 1 with nothing for a thief over [20, 30): an interval, no blast terms (the
    blast radius averages over the time a thief gets something). A thief authority 2 over
    [90, 120) with horizon 100, what it steals working until 200 (cut at 100): terms
    2 x ((100 - 90)^2 - 0) / 2 = 100 over 10."""
    probe, *_ = _probe_alone()
    probe._sum(20.0, 30.0, 1.0, 0.0, math.inf, False)
    assert probe._blast_terms == [] and len(probe.exposure.pending) == 24
    probe._sum(90.0, 120.0, 0.0, 2.0, 200.0, False)
    assert probe._blast_terms == [100.0, 10.0]


def test_a_cumulative_shows_no_interval_left_empty_by_its_clip():
    """[0, 10) under a span starting at 10 is empty once clipped: not shown, not summed."""
    acc = Cumulative(10.0, 110.0, points=2)
    acc.add(0.0, 10.0, 5.0)
    acc.add(20.0, 30.0, 1.0)
    assert [x.tolist() for x in acc.intervals()] == [[20.0], [30.0], [1.0]]
    assert acc.total == 10.0


def test_the_engine_folds_the_probe_with_every_chunk_it_logs(monkeypatch):
    """The probe's buffers are folded whenever the engine hands a chunk of actions on (every
    CHUNK_ROWS, here 50): they never hold more than a chunk's worth, and the sums agree with
    a run whose probe folds only at its end."""
    from simharness import engine

    spec = plain_spec()
    found = []
    for rows in (10**9, 50):
        monkeypatch.setattr(engine, "CHUNK_ROWS", rows)
        folds, longest = [], [0]
        fold = AuthorityProbe.fold

        def counting(self, fold=fold, folds=folds, longest=longest):
            longest[0] = max(longest[0], len(self._uses) // 24)
            folds.append(1)
            fold(self)

        monkeypatch.setattr(AuthorityProbe, "fold", counting)
        log = simulate(build_workload(spec, 0), make("static_iam", "static_iam", {},
                                                     World(spec)))
        found.append((log.authority.exposure.total, log.authority.standing,
                       len(folds), longest[0]))
    (whole, standing, once, _), (chunked, standing2, many, most) = found
    assert once == 2 and many > 10 and 0 < most <= 50  # the end's flush, and finish
    assert chunked == pytest.approx(whole, rel=1e-12) and standing2 == pytest.approx(standing,
                                                                                    rel=1e-12)


def test_a_cumulative_clips_its_intervals_to_its_span():
    """Intervals are added as they are and clipped to [lo, hi] when summed: 1 over [0, 20)
    counts over [10, 20), 2 over [100, 200) over [100, 110), 3 over [0, 5) not at all."""
    acc = Cumulative(10.0, 110.0, points=2)
    for a, b, w in ((0.0, 20.0, 1.0), (100.0, 200.0, 2.0), (0.0, 5.0, 3.0)):
        acc.add(a, b, w)
    assert [x.tolist() for x in acc.intervals()] == [[10.0, 100.0], [20.0, 110.0], [1.0, 2.0]]
    assert acc.total == 30.0


def test_the_standing_part_is_exactly_rounded():
    """Cumulative totals (the standing part is one) are the exactly rounded sum of their terms
    (math.fsum per fold), not a running total nor numpy's pairwise sum, whose last bits depend
    on the order of additions (and, for a pairwise sum, on the machine's SIMD)."""
    from fractions import Fraction

    acc = Cumulative(0.0, 10.0, points=1)
    terms = [1e16 if k % 3 == 0 else 1.0 + k / 7 for k in range(40)]
    for w in terms:
        acc.add(0.0, 1.0, w)
    running = 0.0
    for w in terms:
        running += w
    assert acc.total == float(sum(Fraction(w) for w in terms)) != running
    probe, *_ = _probe_alone()
    probe._standing.add(0.0, 1.0, 0.5)  # and finish reports the probe's standing part's total
    assert probe.finish().standing == probe._standing.total


def test_a_fold_leaves_nothing_behind_and_changes_the_sums_only_by_rounding():
    """Spans (the fast paths' marks included), intervals and uses wait in buffers until a
    fold, which empties them all; folding every ten tasks gives the sums of folding only at
    the end (to rounding: each fold's sum is exactly rounded)."""
    found = []
    for every in (10**9, 10):
        probe, *_, agent, _ = _probe_alone()
        st = probe.state[0]
        for k in range(200):
            c = _begin(probe, agent, k, 0.3 * k)
            probe._uses.extend(pack_span(0.3 * k, 0.1, 1.0))
            _end(probe, c, 0.3 * k + 0.2)
            if k % every == every - 1:
                probe.fold()
                assert not (probe.exposure.pending or probe._standing.pending or probe._uses
                            or st.marks or st.spans)
        if every > 200:
            assert len(st.marks) > 300 and len(probe._uses) == 200 * 24  # all still waiting
        a = probe.finish()
        found.append((a.exposure.curve()[1], a.standing))
    np.testing.assert_allclose(found[0][0], found[1][0], rtol=1e-12)
    assert found[0][1] == pytest.approx(found[1][1], rel=1e-12)


class _TaskCredentialReads(StaticIAM):
    """Allows a request presenting a task credential: everything while its task runs, reads
    only once the task has ended (a replayed token); nothing without one."""

    def decide(self, req):
        cred = req.credential
        ok = cred is not None and cred.kind == "task" and (req.task_active or req.action == "read")
        return Decision(ok, ("task credential",))


def test_a_task_credential_outliving_its_task_is_held_inactive_until_it_expires():
    """A task presenting its own credential (live until 100) over [10, 20), then a task with
    none over [30, 40): the first's credential stays with the agent once its task ends,
    probed as an ended task's (reads only), through the second task and after it, until it
    expires at 100."""
    world = World(plain_spec())
    probe, _, ledger, agent, _ = _probe_alone(control=_TaskCredentialReads("t", {}, world))
    ident = agent.standing_identity
    everything = sum(world.weight.values())
    reads = sum(w for p, w in world.weight.items() if p[1] == "read")
    assert 0 < reads < everything
    cred = ledger.issue(ident, frozenset(world.weight), 10.0, ttl=90.0, kind="task", task_id=1)
    first = _task_context(agent, ident, 1, "answer_ticket", cred=cred)
    probe.enter(0, first, 10.0)
    assert probe.current(0).weight == pytest.approx(everything)
    probe.leave(0, first, 20.0)
    assert probe.current(0).weight == pytest.approx(reads)  # held, probed as ended
    second = _task_context(agent, ident, 2, "answer_ticket")
    probe.enter(0, second, 30.0)
    probe.leave(0, second, 40.0)  # not the short cut: a credential is held
    assert probe.current(0).weight == pytest.approx(reads)
    probe._advance(0, 100.0)
    assert probe.current(0).weight == 0.0


def test_a_fold_does_not_depend_on_who_still_holds_its_frames():
    """dask's workers sample every thread's stack and may hold a frame past its return, and
    the frame keeps its locals, arrays read from the packed spans included: the fold must
    still empty its buffer (a view of the bytearray would forbid resizing it)."""
    import sys

    frames = []

    def keep(frame, event, arg):  # every Python frame the fold runs, held past its return
        if event == "call":
            frames.append(frame)

    acc = Cumulative(0.0, 10.0)
    acc.add(1.0, 2.0, 1.0)
    sys.setprofile(keep)
    try:
        acc.fold()
    finally:
        sys.setprofile(None)
    assert frames and not acc.pending and acc.total == 1.0
