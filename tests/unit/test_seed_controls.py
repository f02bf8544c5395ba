"""The seed control models, one decision branch and one parameter at a time, on hand-built
requests and credentials: each test fails when its branch or parameter is removed or ignored
(the expectations are written by hand from the model's documented semantics)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from simharness.actions import AgentInfo, Task
from simharness.controls.base import Decision, Ledger, Local, Station, TaskContext, World, make
from simharness.loader import load_scenario
from simharness.testing import request_for

READ = ("crm_api", "read", "crm")
WRITE = ("crm_api", "write", "crm")
SEND = ("http", "send", "outbound_mail")
PASTE = ("http", "send", "paste_site")
ADMIN = ("sql", "admin", "ledger")


@pytest.fixture(scope="module")
def world():
    return World(load_scenario("baseline"))


def req(world, perm, **kw):
    kw.setdefault("identity", "support-0")
    return request_for(world, perm, archetype="support", **kw)


def role_cred(world, ledger=None, **kw):
    ledger = ledger or Ledger(world.weight)
    return ledger.issue("support-0", world.roles["support"], 0.0, **kw)


def sample(dist) -> float:
    return float(dist.sample(np.random.default_rng(0), 1)[0])


# -- static_iam and the shared role check ------------------------------------------------------
@pytest.mark.parametrize("model", ["static_iam", "sse_only"])
def test_role_check_branches(world, model):
    c = make(model, model, {}, world)
    cred = role_cred(world, ttl=100.0)
    assert c.decide(req(world, READ, credential=cred)).allow is True
    for request, reason in (
            (req(world, READ, credential=None), "no-credential"),
            (req(world, ADMIN, credential=cred), "not-in-role"),
            (req(world, READ, credential=cred, time=100.0), "credential-expired"),
            (req(world, READ, credential=replace(cred, revoked=5.0)), "credential-revoked")):
        d = c.decide(request)
        assert d.allow is False and d.reasons == (reason,), (reason, d)
    # A revocation in the future has not happened yet.
    assert c.decide(req(world, READ, credential=replace(cred, revoked=50.0))).allow is True


def test_static_iam_quarantine_check_latency_and_attribution(world):
    c = make("s", "static_iam", {"revoke_on_deviation": True, "quarantine": "10m",
                                 "check": "3ms"}, world)
    ledger = Ledger(world.weight)
    cred = role_cred(world, ledger)
    assert c.on_deviation("support-0", ledger, 0.0) == 1 and cred.revoked == 0.0
    d = c.decide(req(world, READ, credential=role_cred(world), time=599.0))
    assert d.reasons == ("identity-quarantined",)
    assert c.decide(req(world, READ, credential=role_cred(world), time=600.0)).allow is True
    stage = c.path()[0]
    assert isinstance(stage, Local) and sample(stage.latency) == 0.003
    r = req(world, READ, credential=cred)
    assert not c.attributes(r) and c.attributes(replace(r, identity_mode="per_task"))
    assert not c.attributes(replace(r, identity_mode="per_task", attested=False))
    # Without revoke_on_deviation a flag changes nothing.
    plain = make("s", "static_iam", {}, world)
    assert plain.on_deviation("support-0", ledger, 0.0) == 0 and not plain.quarantined


# -- sse_only ----------------------------------------------------------------------------------
def test_sse_proxy_parameters(world):
    cred = role_cred(world)
    sse = make("p", "sse_only", {}, world)
    assert sse.decide(req(world, PASTE, credential=cred)).reasons == ("destination-unapproved",)
    assert make("p", "sse_only", {"block_unapproved": False}, world).decide(
        req(world, PASTE, credential=cred)).allow is True
    big = req(world, SEND, credential=cred, bytes_out=1_000_001)
    assert sse.decide(big).reasons == ("dlp-egress",)
    assert sse.decide(replace(big, bytes_out=1_000_000)).allow is True
    assert make("p", "sse_only", {"dlp_max_bytes": 2_000_000}, world).decide(big).allow is True
    # An internal destination is not egress, however many bytes.
    assert sse.decide(req(world, WRITE, credential=cred, bytes_out=10**9)).allow is True


def test_sse_sees_only_first_party_agent_traffic(world):
    sse = make("p", "sse_only", {}, world)
    cred = role_cred(world)
    for hidden in (req(world, PASTE, credential=cred, platform="third_party"),
                   req(world, PASTE, credential=cred, source="external")):
        assert not sse.visible(hidden)
        assert sse.decide(hidden).reasons == ("in-role", "not-inspected")
    assert sse.visible(req(world, PASTE, credential=cred))


def test_sse_proxy_station(world):
    st = make("p", "sse_only", {"servers": 3, "rtt": "4ms", "inspect": "6ms"}, world).path()[0]
    assert isinstance(st, Station) and st.name == "proxy" and st.servers == 3
    assert sample(st.rtt) == pytest.approx(0.004) and sample(st.service) == pytest.approx(0.006)


# -- jit_per_task ------------------------------------------------------------------------------
def agent(world, archetype="support") -> AgentInfo:
    return AgentInfo(0, f"{archetype}-0", archetype, "per_agent", "first_party",
                     world.roles[archetype])


def ctx(world, declared, parent=None, task_id=1, revocable=True) -> TaskContext:
    task = Task(task_id, "answer_ticket", 0, 0.0, [], frozenset(declared),
                declared=frozenset(declared))
    return TaskContext(task, agent(world), "support-0", parent, 0, revocable)


def jit(world, **params):
    return make("j", "jit_per_task", params, world)


def test_jit_granularity(world):
    declared = {READ}
    scopes = {g: jit(world, granularity=g).on_task_start(ctx(world, declared), Ledger(world.weight), 0.0).perms
              for g in ("permission", "tool_action", "tool")}
    assert scopes["permission"] == {READ}
    assert scopes["tool_action"] == {READ}  # crm_api reaches one resource
    role = world.roles["support"]
    assert scopes["tool"] == {p for p in role if p[0] == "crm_api"}  # read, write, delete
    send = jit(world, granularity="tool_action").on_task_start(
        ctx(world, {SEND}), Ledger(world.weight), 0.0).perms
    assert send == {SEND, PASTE}  # the same action on every resource of the tool


def test_jit_token_lifetime_binding_and_audience(world):
    ledger = Ledger(world.weight)
    c = jit(world, ttl="10m", sender_constrained=True, audience_binding=True)
    tok = c.on_task_start(ctx(world, {READ, SEND}), ledger, 5.0)
    assert (tok.issued, tok.expires, tok.kind, tok.task_id) == (5.0, 605.0, "task", 1)
    assert tok.bound_to == "support-0" and tok.audience == {"crm_api", "http"}
    assert tok.weight == world.weight[READ] + world.weight[SEND] + world.weight[PASTE]
    ok = req(world, READ, credential=tok)
    assert c.decide(ok).reasons == ("token-valid",)
    for request, reason in (
            (replace(ok, credential=None), "no-token"),
            (replace(ok, time=605.0), "token-expired"),
            (replace(ok, credential=replace(tok, revoked=6.0)), "token-revoked"),
            (replace(ok, identity="billing-0"), "sender-constraint"),
            (replace(ok, attested=False), "sender-constraint"),
            (replace(ok, credential=replace(tok, audience=frozenset({"http"}))), "wrong-audience"),
            (req(world, WRITE, credential=tok), "out-of-token-scope")):
        d = c.decide(request)
        assert d.allow is False and d.reasons == (reason,), (reason, d)
    loose = jit(world, sender_constrained=False, audience_binding=False)
    tok2 = loose.on_task_start(ctx(world, {READ}), ledger, 0.0)
    assert tok2.bound_to is None and tok2.audience is None
    assert loose.decide(req(world, READ, credential=tok2, identity="billing-0", attested=False)).allow


def test_jit_quarantine_renew_revoke_and_delegation(world):
    ledger = Ledger(world.weight)
    c = jit(world, revoke_on_deviation=True, quarantine="1h", ttl="15m")
    tok = c.on_task_start(ctx(world, {READ}), ledger, 0.0)
    c.on_deviation("support-0", ledger, 10.0)
    assert tok.revoked == 10.0
    assert c.decide(req(world, READ, credential=replace(tok, revoked=None), time=20.0)).reasons == (
        "identity-quarantined",)
    # renew: a fresh token with the same grant for another ttl; off: none.
    new = c.renew(ctx(world, {READ}), tok, ledger, 900.0)
    assert new is not None and new.perms == tok.perms and new.expires == 1800.0
    assert jit(world, renew=False).renew(ctx(world, {READ}), tok, ledger, 900.0) is None
    # revoke_on_complete revokes the task's own token at its end, not a passed-through one.
    c2 = jit(world)
    t2 = c2.on_task_start(ctx(world, {READ}), ledger, 0.0)
    c2.on_task_end(ctx(world, {READ}), t2, ledger, 50.0)
    assert t2.revoked == 50.0
    t3 = jit(world, revoke_on_complete=False).on_task_start(ctx(world, {READ}), ledger, 0.0)
    jit(world, revoke_on_complete=False).on_task_end(ctx(world, {READ}), t3, ledger, 50.0)
    assert t3.revoked is None
    # delegation: passthrough hands the delegator's token on; exchange issues a down-scoped one.
    parent = c2.on_task_start(ctx(world, {READ, SEND}), ledger, 0.0)
    assert jit(world, delegation="passthrough").on_task_start(
        ctx(world, {READ}, parent=parent), ledger, 1.0) is parent
    sub = jit(world, delegation="exchange").on_task_start(ctx(world, {READ}, parent=parent),
                                                          ledger, 1.0)
    assert sub is not parent and sub.perms == {READ}
    sub_end = ctx(world, {READ}, parent=parent, task_id=2)
    jit(world).on_task_end(sub_end, parent, ledger, 2.0)  # not the sub-task's token
    assert parent.revoked is None
    # Third-party platforms: a token the organisation cannot revoke.
    assert jit(world).on_task_start(ctx(world, {READ}, revocable=False), ledger, 0.0).revocable is False


def test_jit_local_check_and_token_service(world):
    c = jit(world, check="7us", token_service={"servers": 2, "rtt": "3ms", "service_time": "9ms"})
    assert sample(c.path()[0].latency) == 7e-6
    ts = c.token_service()
    assert (ts.name, ts.servers) == ("token_service", 2)
    assert sample(ts.rtt) == 0.003 and sample(ts.service) == pytest.approx(0.009)
    r = req(world, READ, credential=Ledger(world.weight).issue("support-0", frozenset({READ}),
                                                                 0.0, 900.0, task_id=3))
    assert c.attributes(r) and not c.attributes(replace(r, identity_mode="shared"))
    assert not c.attributes(replace(r, credential=None))


# -- per_action_policy -------------------------------------------------------------------------
def test_per_action_policy_capability_pdp_and_quarantine(world):
    ledger = Ledger(world.weight)
    p = make("p", "per_action_policy", {"capability_ttl": "30s"}, world)
    r = req(world, READ)
    p.on_allow(r, ledger, 100.0)
    cap = ledger.credentials[-1]
    assert (cap.kind, cap.perms, cap.issued, cap.expires) == ("capability", {READ}, 100.0, 130.0)
    n = len(ledger.credentials)
    make("p", "per_action_policy", {}, world).on_allow(r, ledger, 100.0)  # ttl 0: none
    assert len(ledger.credentials) == n
    pdp = {"servers": 5, "rtt": "2ms", "service_time": "4ms", "timeout": "50ms",
           "fail_mode": "open", "cache": {"ttl": "1s", "key": ["identity", "tool"]}}
    st = make("p", "per_action_policy", {"pdp": pdp}, world).path()[0]
    assert (st.name, st.servers, st.timeout, st.fail_mode, st.cache_ttl, st.cache_key) == (
        "pdp", 5, 0.05, "open", 1.0, ("identity", "tool"))
    assert sample(st.rtt) == pytest.approx(0.002) and sample(st.service) == pytest.approx(0.004)
    q = make("p", "per_action_policy", {"revoke_on_deviation": True, "quarantine": "1m"}, world)
    q.on_deviation("support-0", ledger, 0.0)
    assert q.decide(replace(r, time=59.0)).reasons == ("identity-quarantined",)
    assert q.decide(replace(r, time=60.0)).allow is True
    assert p.attributes(r) and not p.attributes(replace(r, attested=False))
    assert not p.attributes(replace(r, identity_mode="shared"))


# -- layered -------------------------------------------------------------------------------------
def test_layered_needs_every_member_and_intersects_credentials(world):
    c = make("l", "layered", {"members": [{"model": "static_iam"},
                                          {"model": "jit_per_task",
                                           "params": {"granularity": "permission"}}]}, world)
    ledger = Ledger(world.weight)
    task = ctx(world, {READ})
    composite = c.on_task_start(task, ledger, 0.0)
    assert composite.perms == {READ}  # role & token
    assert c.decide(req(world, READ, credential=composite)).allow is True
    d = c.decide(req(world, WRITE, credential=composite))
    assert d.allow is False and d.reasons == ("static_iam:in-role", "jit_per_task:out-of-token-scope")
    assert len(c.path()) == 2 and c.token_service() is not None
    # One member alone allows what the other denies: the stack denies.
    only_role = make("l", "layered", {"members": [{"model": "static_iam"}]}, world)
    assert only_role.decide(req(world, WRITE, credential=role_cred(world))).allow is True
    # Ending the task revokes the composite when a member's part ended.
    c.on_task_end(task, composite, ledger, 10.0)
    assert composite.revoked == 10.0


# -- the ledger ----------------------------------------------------------------------------------
def test_ledger_issue_revoke_and_live(world):
    ledger = Ledger(world.weight)
    seen = []
    ledger.on_change = lambda holder, t: seen.append((holder, t))
    cred = ledger.issue("a", frozenset({READ, ADMIN}), 10.0, 50.0, kind="task")
    assert cred.weight == world.weight[READ] + world.weight[ADMIN] == 4 + 128
    assert (cred.id, cred.expires, ledger.tokens_issued, seen) == (0, 60.0, 1, [("a", 10.0)])
    role = ledger.issue("a", frozenset({READ}), 0.0, notify=False)
    assert ledger.tokens_issued == 1 and role.expires == math.inf and len(seen) == 1
    assert not cred.live(9.9) and cred.live(10.0) and not cred.live(60.0)
    assert ledger.revoke(cred, 20.0) and cred.revoked == 20.0 and cred.end == 20.0
    assert not cred.live(20.0) and seen[-1] == ("a", 20.0)
    assert not ledger.revoke(cred, 30.0)  # already revoked
    late = ledger.issue("a", frozenset({READ}), 0.0, 5.0)
    assert not ledger.revoke(late, 5.0) and late.revoked is None  # already expired
    stuck = ledger.issue("a", frozenset({READ}), 0.0, 100.0, revocable=False)
    assert not ledger.revoke(stuck, 1.0) and ledger.revocations_refused == 1


# -- what mutation testing found unpinned ------------------------------------------------------
def test_capability_is_the_requesters_for_the_task(world):
    ledger = Ledger(world.weight)
    make("p", "per_action_policy", {"capability_ttl": "500ms"}, world).on_allow(
        req(world, READ, task_id=7), ledger, 1.0)
    cap = ledger.credentials[-1]
    assert (cap.holder, cap.task_id, cap.expires) == ("support-0", 7, 1.5)


def test_jit_renewal_keeps_everything_but_the_lifetime(world):
    ledger = Ledger(world.weight)
    c = jit(world, sender_constrained=True, ttl="5m")
    old = c.on_task_start(ctx(world, {READ}, task_id=4, revocable=False), ledger, 0.0)
    new = c.renew(ctx(world, {READ}, task_id=4), old, ledger, 300.0)
    assert (new.holder, new.perms, new.kind, new.task_id, new.bound_to, new.audience,
            new.revocable, new.issued, new.expires) == (
        old.holder, old.perms, "task", 4, "support-0", old.audience, False, 300.0, 600.0)


def test_jit_edges(world):
    c = jit(world, revoke_on_deviation=True)
    tok = c.on_task_start(ctx(world, {READ}, task_id=0), Ledger(world.weight), 0.0)
    r = req(world, READ, credential=tok)
    assert c.decide(replace(r, credential=replace(tok, revoked=10.0), time=10.0)).reasons == (
        "token-revoked",)  # revoked at this very moment
    assert c.attributes(r)  # task 0 is a task
    c.on_deviation("support-0", Ledger(world.weight), 0.0)
    assert c.decide(replace(r, credential=replace(tok, revoked=None))).allow is False


def test_jit_service_account_resources_come_whole():
    spec = load_scenario("legacy_saas")
    w = World(spec)
    sa = w.service_account_perms
    assert sa
    archetype = next(a.name for a in spec.agents if w.roles[a.name] & sa)
    role = w.roles[archetype]
    one = sorted(role & sa)[0]
    other = sorted(role - sa)[0]
    agent_ = AgentInfo(0, f"{archetype}-0", archetype, "per_agent", "first_party", role)

    def scope(declared):
        task = Task(1, "t", 0, 0.0, [], frozenset(declared), declared=frozenset(declared))
        c = TaskContext(task, agent_, agent_.name, None, 0, True)
        return make("j", "jit_per_task", {"granularity": "permission"}, w).on_task_start(
            c, Ledger(w.weight), 0.0).perms

    assert scope({one}) == role & sa  # one service-account permission brings them all
    assert scope({other}) == {other}


def test_standing_credential_reissued_after_it_ends_unless_quarantined(world):
    c = make("s", "static_iam", {"revoke_on_deviation": True, "quarantine": "100s"}, world)
    ledger = Ledger(world.weight)
    first = c.credential_for("support-0", "support", True, ledger, 0.0)
    assert c.credential_for("support-0", "support", True, ledger, 5.0) is first
    c.on_deviation("support-0", ledger, 10.0)  # revoked, quarantined until 110
    assert c.credential_for("support-0", "support", True, ledger, 50.0) is first
    again = c.credential_for("support-0", "support", True, ledger, 110.0)
    assert again is not first and again.issued == 110.0 and again.live(110.0)
    assert c.standing_credential("support-0") is again


def test_layered_composite_and_end(world):
    params = {"members": [{"model": "static_iam"},
                          {"model": "jit_per_task", "params": {"ttl": "10m"}}]}
    c = make("l", "layered", params, world)
    ledger = Ledger(world.weight)
    task = ctx(world, {READ}, task_id=5, revocable=False)
    comp = c.on_task_start(task, ledger, 100.0)
    assert (comp.holder, comp.kind, comp.task_id, comp.issued, comp.expires, comp.revocable) == (
        "support-0", "task", 5, 100.0, 700.0, False)
    standing = c.credential_for("support-0", "support", True, ledger, 0.0)
    assert (standing.kind, standing.task_id, standing.expires) == ("role", -1, math.inf)
    # The end hook gives each member its own part: the JIT member revokes its token...
    c2 = make("l", "layered", params, world)
    comp2 = c2.on_task_start(ctx(world, {READ}, task_id=6), ledger, 0.0)
    token = c2._parts[comp2.id][1]
    c2.on_task_end(ctx(world, {READ}, task_id=6), comp2, ledger, 50.0)
    assert token.revoked == 50.0 and comp2.revoked == 50.0  # ...so the composite ends too
    # A composite whose parts all live on is not revoked at the task's end.
    keep = make("l", "layered", {"members": [{"model": "static_iam"}]}, world)
    held = keep.credential_for("support-0", "support", True, ledger, 0.0)
    keep.on_task_end(ctx(world, {READ}), held, ledger, 60.0)
    assert held.revoked is None


def test_layered_quarantine_and_errors(world, monkeypatch):
    from simharness.controls import base
    from simharness.controls.base import Control, Decision

    class Broken(Control):
        model = "broken_for_test"

        def decide(self, req):
            return Decision(False, ("bad",), ("TypeError: boom",))

    monkeypatch.setitem(base._REGISTRY, Broken.model, Broken)  # for this test only

    c = make("l", "layered", {"members": [{"model": "none"}, {"model": "broken_for_test"}],
                              "revoke_on_deviation": True}, world)
    d = c.decide(req(world, READ))
    assert d.allow is False and d.errors == ("TypeError: boom",)
    assert d.reasons == ("none:allow", "broken_for_test:bad")
    c.on_deviation("support-0", Ledger(world.weight), 0.0)
    d = c.decide(req(world, READ))
    assert d.allow is False and d.reasons == ("identity-quarantined",)


def test_layered_passes_every_hook_to_its_members(world, monkeypatch):
    """observe, on_allow, attributes, credential_for and the task end reach each member with
    the request, the identity and its own part; a stack without a token service or reviewers
    has none."""
    from simharness.controls import base
    from simharness.controls.base import Control, Decision

    calls: list[tuple] = []

    class Spy(Control):
        model = "spy_for_test"

        def decide(self, req):
            return Decision(True, ("ok",))

        def observe(self, req, decision):
            calls.append(("observe", self.name, req.identity, decision.allow))

        def on_allow(self, req, ledger, now):
            calls.append(("on_allow", self.name, req.identity, now))

        def attributes(self, req):
            return self.name.endswith(".1")  # only the second member attributes

        def credential_for(self, identity, archetype, revocable, ledger, now):
            calls.append(("credential_for", self.name, identity, archetype))
            return None

        def on_task_end(self, ctx, cred, ledger, now):
            calls.append(("end", self.name, cred))

    monkeypatch.setitem(base._REGISTRY, Spy.model, Spy)
    c = make("l", "layered", {"members": [{"model": "spy_for_test"},
                                          {"model": "spy_for_test"}]}, world)
    r = req(world, READ)
    c.observe(r, c.decide(r))
    c.on_allow(r, Ledger(world.weight), 7.0)
    assert c.attributes(r) is True  # any member that attributes is enough
    assert c.credential_for("support-0", "support", True, Ledger(world.weight), 0.0) is None
    c.on_task_end(ctx(world, {READ}), None, Ledger(world.weight), 9.0)  # no credential: no crash
    assert calls == [("observe", "l.0", "support-0", True), ("observe", "l.1", "support-0", True),
                     ("on_allow", "l.0", "support-0", 7.0), ("on_allow", "l.1", "support-0", 7.0),
                     ("credential_for", "l.0", "support-0", "support"),
                     ("credential_for", "l.1", "support-0", "support"),
                     ("end", "l.0", None), ("end", "l.1", None)]
    assert c.token_service() is None and c.reviewers() is None
    only_first = make("l", "layered", {"members": [{"model": "spy_for_test"}]}, world)
    assert only_first.attributes(r) is False


def test_layered_members_issue_to_the_identity_and_report_their_facts(world):
    c = make("l", "layered", {"members": [{"model": "static_iam"}]}, world)
    cred = c.credential_for("support-3", "support", True, Ledger(world.weight), 0.0)
    assert cred.holder == "support-3"
    assert c._parts[cred.id][0].holder == "support-3"  # the member's own part too
    assert c.facts() == {}
    measured = make("l", "layered", {"members": [{"model": "per_action_policy", "params": {
        "pdp": {"service_time": "measured"}}}]}, world)
    facts = measured.facts()["l.0"]
    assert facts["pdp_service_time"] == "measured" and facts["measured_service_us"]["n"] > 0


def test_registry_suggests_loads_plug_ins_and_skips_broken_ones(world, monkeypatch):
    from simharness.controls import base
    from simharness.controls.static_iam import StaticIAM

    with pytest.raises(KeyError, match="did you mean 'jit_per_task'"):
        base.get_model("jit_per_tsk")
    spec = world.spec
    assert base.params_problems("jit_per_tsk", {}, spec)[0][0] == ("model",)
    assert base.params_problems("jit_per_task", {"ttll": 1}, spec)[0][0] == ("params", "ttll")

    class EP:
        def __init__(self, name, target):
            self.name, self.target = name, target

        def load(self):
            if self.target is None:
                raise ImportError("broken plug-in")
            return self.target

    monkeypatch.setattr(base, "entry_points", lambda group: [EP("plugin_for_test", StaticIAM),
                                                             EP("broken_plugin", None)])
    monkeypatch.delitem(base._REGISTRY, "plugin_for_test", raising=False)
    assert base.get_model("plugin_for_test") is StaticIAM  # loaded on the registry miss
    assert "broken_plugin" not in base._REGISTRY
    monkeypatch.delitem(base._REGISTRY, "plugin_for_test")


def test_sse_only_proxy_branches(world):
    """What a network proxy can see and decide: nothing off its path, unapproved destinations,
    large egress to external ones (DLP); the role check first."""
    c = make("s", "sse_only", {}, world)
    perms = frozenset({READ, SEND, PASTE})
    cred = Ledger(world.weight).issue("support-0", perms, 0.0)

    def ask(perm, **kw):
        return c.decide(req(world, perm, credential=cred, **kw))

    assert ask(READ) == Decision(True, ("in-role", "inspected"))
    # Off the proxy's path (an embedded third-party agent): allowed unseen.
    assert ask(PASTE, platform="third_party") == Decision(True, ("in-role", "not-inspected"))
    assert c.visible(req(world, READ, platform="third_party")) is False
    assert ask(PASTE) == Decision(False, ("destination-unapproved",))
    assert ask(SEND, bytes_out=1_000_001) == Decision(False, ("dlp-egress",))
    assert ask(SEND, bytes_out=1_000_000) == Decision(True, ("in-role", "inspected"))
    # Parameters: the DLP limit and the destination block.
    loose = make("s", "sse_only", {"dlp_max_bytes": 10**9, "block_unapproved": False}, world)
    assert loose.decide(req(world, SEND, credential=cred, bytes_out=1_000_001)).allow is True
    assert loose.decide(req(world, PASTE, credential=cred)).allow is True
    assert make("n", "none", {}, world).visible(req(world, READ)) is False  # no log, no proxy


def test_measured_pdp_service_time_units(world):
    """service_time: measured times the policy engine here: the PDP samples those times in
    seconds and the facts report them in microseconds (p50, p99, mean of the same samples)."""
    c = make("p", "per_action_policy", {"pdp": {"service_time": "measured"}}, world)
    seconds = np.asarray(c.service_time.samples)
    facts = c.facts()
    us = facts["measured_service_us"]
    assert facts["pdp_service_time"] == "measured" and us["n"] == len(seconds) > 100
    assert us["p50"] == pytest.approx(np.percentile(seconds, 50) * 1e6)
    assert us["p99"] == pytest.approx(np.percentile(seconds, 99) * 1e6)
    assert us["mean"] == pytest.approx(seconds.mean() * 1e6)
    assert 0.1 < us["p50"] < 10_000 and us["p50"] <= us["p99"]  # microseconds, not ns or s
    station = c.path()[0]
    assert station.service is c.service_time
    assert make("q", "per_action_policy", {}, world).facts() == {}  # nothing measured


def test_missing_policy_file_says_where_it_looked(world):
    from simharness.loader import data_dir

    with pytest.raises(FileNotFoundError) as e:
        make("p", "per_action_policy", {"policy": "no_such_policy.yaml"}, world)
    assert str(e.value) == ("policy file 'no_such_policy.yaml' not found (looked in the working "
                            f"directory and {data_dir('controls')})")
