"""The rules engine, one semantic at a time, on hand-built requests (expectations written from
the documented semantics): rate windows, credential attributes, the compiled fast path and
the careful path, action-restricted rules."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import numpy as np
import pytest

from simharness.controls.base import Credential, Decision, Ledger, World
from simharness.loader import load_scenario
from simharness.policy import engines
from simharness.policy import rules as rules_mod
from simharness.policy.rules import PolicyError, compile_rules, rules_problems
from simharness.testing import request_for

READ = ("crm_api", "read", "crm")
WRITE = ("crm_api", "write", "crm")


@pytest.fixture(scope="module")
def world():
    return World(load_scenario("baseline"))


def req(world, perm=READ, **kw):
    kw.setdefault("identity", "support-0")
    return request_for(world, perm, archetype="support", **kw)


def test_rate_window_denies_the_request_over_the_limit_until_the_window_slides(world):
    p = compile_rules({"policy_version": 1, "default": "allow", "rules": [
        {"id": "burst", "effect": "deny", "when": {"rate": {"key": "identity", "window": "10s",
                                                             "gt": 2}}}]})
    outcomes = []
    for t in (0.0, 1.0, 2.0, 3.0, 13.5):
        r = req(world, time=t)
        d = p.evaluate(r)
        outcomes.append(d.allow)
        p.observe(r)
    # The window holds the requests seen in (t - 10 s, t]: at t = 2 it holds 0 and 1 (2, not
    # > 2: allow); at t = 3 it holds 0, 1, 2 (3 > 2: deny); at 13.5 only 3.0 (allow).
    assert outcomes == [True, True, True, False, True]
    # Another identity has its own window.
    assert p.evaluate(req(world, time=3.0, identity="support-1")).allow is True


def test_credential_attributes(world):
    p = compile_rules({"policy_version": 1, "rules": [
        {"id": "own-task-token", "effect": "allow",
         "when": {"token.holder_matches": True, "token.task_scoped": True}}]})
    ledger = Ledger(world.weight)
    task_token = ledger.issue("support-0", frozenset({READ}), 0.0, 60.0, kind="task", task_id=1)
    assert p.evaluate(req(world, credential=task_token)).allow is True
    assert p.evaluate(req(world, credential=replace(task_token, holder="other"))).allow is False
    assert p.evaluate(req(world, credential=replace(task_token, task_id=-1))).allow is False
    assert p.evaluate(req(world, credential=None)).allow is False  # no token: attributes absent


def test_the_compiled_fast_path_decides_and_agrees_with_the_careful_path(world, monkeypatch):
    rules = {"policy_version": 1, "rules": [
        {"id": "read-only", "effect": "allow", "when": {"action": "read", "entitled": True}},
        {"id": "writes-too", "effect": "allow", "when": {"action": {"in": ["write"]},
                                                         "tool": "sql"}},
        {"id": "no-high-risk", "effect": "deny", "when": {"risk": {"gt": 0.9}}}]}
    p = compile_rules(rules)
    cases = [req(world, READ), req(world, WRITE), req(world, READ, risk=0.95)]
    careful = [p.evaluate_each(r) for r in cases]
    assert [d.allow for d in careful] == [True, False, False]
    assert careful[2].reasons == ("no-high-risk",)
    # The fast path is what decides a normal request: the careful one is never called.
    monkeypatch.setattr(p, "evaluate_each", lambda r: pytest.fail("careful path used"))
    assert [p.evaluate(r) for r in cases] == careful


def test_a_rule_that_raises_goes_the_careful_way_and_never_allows(world):
    p = compile_rules({"policy_version": 1, "default": "allow", "rules": [
        {"id": "big-send", "effect": "deny", "when": {"bytes_out": {"gt": 10}}}]})
    d = p.evaluate(req(world, bytes_out=None))  # None > 10 raises in the rule
    assert d.allow is False and d.errors


def test_calibration_requests_come_from_the_world_and_the_seed(world):
    from simharness.policy.engines import time_decisions, world_requests

    a, b = world_requests(world, n=200, seed=1), world_requests(world, n=200, seed=1)
    assert [(r.identity, r.perm, r.time) for r in a] == [(r.identity, r.perm, r.time) for r in b]
    c = world_requests(world, n=200, seed=2)
    assert [r.perm for r in a] != [r.perm for r in c]
    assert {r.identity for r in a} == {f"{name}-0" for name in world.roles}
    assert {r.perm for r in a} <= world.all_perms
    # entitled as the directory says: the identity's role holds the permission.
    assert all(r.entitled == (r.perm in world.roles[r.identity[:-2]]) for r in a)
    times = [r.time for r in a]
    assert times == sorted(times)
    ns = time_decisions(compile_rules({"policy_version": 1, "rules": []}), a, repeat=3, warmup=5)
    assert ns.shape == (200,) and (ns > 0).all()


def test_a_rego_policy_reading_the_rate_without_a_window_is_refused(tmp_path):
    pytest.importorskip("regopy", reason="needs the rego extra (pip install 'simharness[rego]')")
    from simharness.policy.engines import PolicyError, load_policy

    path = tmp_path / "r.rego"
    path.write_text('package simharness\n\nimport rego.v1\n\ndefault decision := '
                    '{"allow": false, "reasons": ["d"]}\n\ndecision := {"allow": true, '
                    '"reasons": ["r"]} if { not input.rate_exceeded }\n')
    with pytest.raises(PolicyError, match=r"r\.rego: reads rate_exceeded but declares no rate "
                                          r"window"):
        load_policy("rego", path, [])


def test_cedar_resources_carry_their_attributes(world, tmp_path):
    pytest.importorskip("cedarpy", reason="needs the cedar extra (pip install 'simharness[cedar]')")
    from simharness.policy.engines import load_policy

    path = tmp_path / "p.cedar"
    path.write_text('@id("crm-internal")\npermit (principal, action, resource)\nwhen { '
                    'resource.name == "crm" && resource.sensitivity == "confidential" && '
                    '!resource.external };\n')
    p = load_policy("cedar", path, world.resources.values())
    assert p.evaluate(req(world, READ)).allow is True
    assert p.evaluate(req(world, ("docs", "read", "wiki"))).allow is False


# --------------------------------------------------------------------------- checking a file
# rules_problems: every problem of a rules document, by its path, with the message written out
# here from the documented contract (one entry per mistake a policy author makes).


TOP_KEYS = "unknown key; known: policy_version, description, default, rules"
RULE_KEYS = "unknown key; known: id, effect, when, description"
RATE_SHAPE = "expected {key: attribute, window: duration, gt: count}"


def test_rules_problems_of_the_document_shape():
    assert rules_problems([1]) == [((), "expected a mapping with `rules:`")]
    assert rules_problems({"policy_version": 1, "description": "d", "default": "allow",
                           "rules": []}) == []
    assert rules_problems({}) == []
    assert rules_problems({"zeta": 1, "alpha": 2, 3: 4, "default": "maybe"}) == [
        ((3,), TOP_KEYS), (("alpha",), TOP_KEYS), (("zeta",), TOP_KEYS),
        (("default",), "must be deny or allow")]
    assert rules_problems({"default": "deny", "rules": 5}) == [
        (("rules",), "expected a list of rules (id, effect, when)")]
    assert rules_problems({"default": None, "rules": {"id": "a"}}) == [
        (("default",), "must be deny or allow"),
        (("rules",), "expected a list of rules (id, effect, when)")]


def test_rules_problems_of_each_rule():
    doc = {"rules": [
        "permit everything",
        {"id": "a", "effect": "allow", "whn": {}, "zz": 1, "description": "fine"},
        {"id": ["x"], "effect": "permit"},
        {"id": 7, "when": ["attested"]},
        {"effect": "deny", "when": None},
        {"id": "ok", "effect": "allow", "when": {"attested": True}},
    ]}
    assert rules_problems(doc) == [
        (("rules", 0), "expected a mapping with id, effect, when"),
        (("rules", 1, "whn"), RULE_KEYS), (("rules", 1, "zz"), RULE_KEYS),
        (("rules", 2, "id"), "expected a name"),
        (("rules", 2, "effect"), "must be allow or deny, got 'permit'"),
        (("rules", 3, "effect"), "must be allow or deny, got None"),
        (("rules", 3, "when"), "expected a mapping of attribute: condition"),
    ]


def _when(**when):
    """The problems of one rule's `when:` (paths relative to it)."""
    out = rules_problems({"rules": [{"id": "r", "effect": "deny", "when": when}]})
    assert all(at[:3] == ("rules", 0, "when") for at, _ in out)
    return [(at[3:], message) for at, message in out]


def test_rules_problems_of_literal_values_by_attribute_kind():
    nan = float("nan")
    assert _when(attested="true") == [
        (("attested",), "expected true or false, got 'true' (a quoted string)")]
    assert _when(entitled=1) == [(("entitled",), "expected true or false, got 1")]
    assert _when(bytes_out="1MB") == [(("bytes_out",), "expected a number, got '1MB'")]
    assert _when(bytes_out=True) == [(("bytes_out",), "expected a number, got True")]
    assert _when(risk=nan) == [(("risk",), "expected a number, got NaN")]
    assert _when(tool=5) == [(("tool",), "expected text, got 5 (quote it)")]
    assert _when(tool=["a", "b"]) == [(("tool",), "expected a single value, got a list")]
    assert _when(tool={"eq": {"a": 1}}) == [(("tool", "eq"), "expected a single value, got a mapping")]
    assert _when(tool={"ne": {"a"}}) == [(("tool", "ne"), "expected a single value, got a mapping")]
    # An argument's value may be anything; whether it was declared is a boolean.
    assert _when(**{"args.amount": 5, "args.to": "x", "args.cc": True}) == []
    assert _when(**{"args.to.known": "no"}) == [
        (("args.to.known",), "expected true or false, got 'no' (a quoted string)")]
    assert _when(**{"args.amount": [1]}) == [(("args.amount",), "expected a single value, got a list")]
    # Fine: null (an absent attribute), the right kinds, and what compile_rules reports instead.
    assert _when(tool=None, attested=False, bytes_out=0, risk=0.5, time=1, **{"task.id": 3}) == []
    assert _when(atested=True, tool={"like": "x"}) == []


def test_rules_problems_of_operators():
    assert _when(tool={"in": "crm_api"}) == [(("tool", "in"), "expected a list of values")]
    assert _when(tool={"not_in": ["a", 5, "b", None, 6.5]}) == [
        (("tool", "not_in", 1), "expected text, got 5 (quote it)"),
        (("tool", "not_in", 4), "expected text, got 6.5 (quote it)")]
    assert _when(attested={"in": [True, "x"]}) == [
        (("attested", "in", 1), "expected true or false, got 'x' (a quoted string)")]
    # Ordering compares numbers; text orders as text (left to the runtime).
    assert _when(tool={"gt": 5}, bytes_out={"gt": 5, "le": 2.5}, **{"args.n": {"lt": 3}}) == []
    assert _when(attested={"gt": 1}) == [
        (("attested", "gt"), "gt compares numbers: expected a finite number, got 1 (attested is boolean)")]
    assert _when(bytes_out={"lt": "1MB"}) == [
        (("bytes_out", "lt"), "lt compares numbers: expected a finite number, got '1MB' (bytes_out is number)")]
    assert _when(bytes_out={"ge": True}) == [
        (("bytes_out", "ge"), "ge compares numbers: expected a finite number, got True (bytes_out is number)")]
    assert _when(risk={"le": float("inf")}) == [
        (("risk", "le"), "le compares numbers: expected a finite number, got inf (risk is number)")]
    assert _when(**{"args.amount": {"gt": "x"}}) == [
        (("args.amount", "gt"), "gt compares numbers: expected a finite number, got 'x'")]
    assert _when(bytes_out={"eq": "x", "ne": 3}) == [(("bytes_out", "eq"), "expected a number, got 'x'")]


def test_rules_problems_of_rate_conditions():
    assert _when(rate=5) == [(("rate",), RATE_SHAPE)]
    assert _when(rate={"gt": 1, "every": "1s"}) == [(("rate",), RATE_SHAPE)]
    assert _when(rate={"key": "identity", "window": "10s"}) == [(("rate",), RATE_SHAPE)]
    assert _when(rate={"gt": 0}) == []  # key and window have defaults
    assert _when(rate={"key": "tool", "window": 3, "gt": 20}) == []
    for gt in (-1, True, 1.5, "3"):
        assert _when(rate={"gt": gt}) == [
            (("rate", "gt"), f"expected a whole number of requests >= 0, got {gt!r}")]
    assert _when(rate={"gt": 1, "key": "nope"}) == [(("rate", "key"), "unknown attribute 'nope'")]
    assert _when(rate={"gt": 1, "window": "0s"}) == [(("rate", "window"), "expected a finite duration > 0")]
    assert _when(rate={"gt": 1, "window": "inf"}) == [(("rate", "window"), "expected a finite duration > 0")]
    [(at, message)] = _when(rate={"gt": 1, "window": "soon"})
    assert at == ("rate", "window") and "got 'soon'" in message


def test_compile_rules_reports_every_problem_at_its_position(tmp_path):
    """load_rules: `file:line:column: path: message`, one line per problem, at the nearest
    position the YAML parser recorded (a rule's `effect` line, a condition's value)."""
    path = tmp_path / "p.yaml"
    path.write_text("policy_version: 1\nrules:\n  - id: a\n    effect: permit\n"
                    "    when: {attested: \"yes\"}\n")
    with pytest.raises(PolicyError) as e:
        rules_mod.load_rules(path)
    assert str(e.value) == (
        f"{path}:4:5: rules.0.effect: must be allow or deny, got 'permit'\n"
        f"{path}:5:12: rules.0.when.attested: expected true or false, got 'yes' (a quoted string)")
    # Without positions: the source only; a problem of the whole document is "(top)"; a
    # position known only for an enclosing path is used for what is inside it.
    with pytest.raises(PolicyError, match=r"^src: \(top\): expected a mapping with `rules:`$"):
        compile_rules([], "src")
    with pytest.raises(PolicyError) as e:
        compile_rules({"rules": [{"id": "a", "effect": "x"}]}, "src", {(): (1, 1), ("rules", 0): (3, 5)})
    assert str(e.value) == "src:3:5: rules.0.effect: must be allow or deny, got 'x'"
    with pytest.raises(PolicyError) as e:
        compile_rules({"zz": 1}, "src", {("rules",): (2, 1)})
    assert str(e.value) == f"src: zz: {TOP_KEYS}"
    with pytest.raises(PolicyError) as e:
        compile_rules({"zz": 1, "rules": 3}, "src", {(): (1, 1), ("rules",): (2, 1)})
    assert str(e.value) == (f"src:1:1: zz: {TOP_KEYS}\n"
                            "src:2:1: rules: expected a list of rules (id, effect, when)")
    with pytest.raises(PolicyError, match=r"^src:1:1: \(top\): expected a mapping"):
        compile_rules(5, "src", {(): (1, 1)})


def test_compile_rules_errors_the_checker_leaves_to_it():
    def compile_when(when, rid="r"):
        return compile_rules({"rules": [{"id": rid, "effect": "allow", "when": when}]}, "src")

    with pytest.raises(PolicyError, match=r"^src: rules\.0\.when: unknown attribute 'atested' "
                                          r"\(did you mean 'attested'\?\)$"):
        compile_when({"atested": True})
    with pytest.raises(PolicyError) as e:
        compile_when({"qqqqqq": True})
    assert str(e.value) == ("src: rules.0.when: unknown attribute 'qqqqqq'; known: "
                            + ", ".join(rules_mod.ATTRIBUTES) + ", args.<name>, args.<name>.known")
    with pytest.raises(PolicyError, match=r"^src: rules\.0\.when\.tool: unknown operator 'like'; "
                                          r"known: eq, ne, in, not_in, lt, le, gt, ge$"):
        compile_when({"tool": {"like": "crm"}})
    with pytest.raises(PolicyError, match=r"^src: rules\.1: duplicate rule id 'a'$"):
        compile_rules({"rules": [{"id": "a", "effect": "allow"}, {"id": "a", "effect": "deny"}]},
                      "src")
    with pytest.raises(PolicyError, match=r"^src: rules\.2: duplicate rule id 'rule-0'$"):
        compile_rules({"rules": [{"effect": "allow"}, {"id": 5, "effect": "deny"},
                                 {"id": "rule-0", "effect": "deny"}]}, "src")


# --------------------------------------------------------------------------- attributes, operators


def _every_attribute(world):
    """A request whose every attribute differs from request_for's default, and what each
    rules attribute reads on it (written out by hand from the request)."""
    cred = Credential(0, "support-0", frozenset({READ}), 1.0, 0.0, task_id=3)
    r = req(world, READ, identity_mode="per_task", attested=False, source="external",
            agent="agent-x", platform="third_party", bytes_out=512, data_sensitivity="internal",
            task_id=7, task_type="lookup", task_active=False, in_scope=False, chain_depth=2,
            chain_origin="billing-0", origin_permits=False, token_mode="exchange",
            credential=cred, risk=0.25, time=42.0)
    expected = {
        "identity": "support-0", "identity_mode": "per_task", "attested": False,
        "source": "external", "agent": "agent-x", "archetype": "support",
        "platform": "third_party", "tool": "crm_api", "action": "read", "resource": "crm",
        "resource.name": "crm", "resource.sensitivity": "confidential",
        "resource.destination": "crm.saas.example", "resource.external": False,
        "resource.approved": True, "resource.auth": "scoped", "bytes_out": 512,
        "data_sensitivity": "internal", "task.id": 7, "task.type": "lookup",
        "task.active": False, "in_scope": False, "entitled": True, "chain.depth": 2,
        "chain.origin": "billing-0", "chain.origin_permits": False,
        "chain.token_mode": "exchange", "token.present": True, "token.holder_matches": True,
        "token.task_scoped": True, "risk": 0.25, "time": 42.0}
    return r, expected


def test_every_attribute_reads_its_field(world):
    r, expected = _every_attribute(world)
    assert {k: get(r) for k, get in rules_mod.ATTRIBUTES.items()} == expected
    other = replace(r, credential=replace(r.credential, holder="billing-0", task_id=-1))
    assert (rules_mod.ATTRIBUTES["token.holder_matches"](other),
            rules_mod.ATTRIBUTES["token.task_scoped"](other)) == (False, False)
    none = replace(r, credential=None)
    assert [rules_mod.ATTRIBUTES[k](none) for k in ("token.present", "token.holder_matches",
                                                      "token.task_scoped")] == [False, None, None]


def test_credential_attributes_read_none_without_a_credential(world):
    """_cred_attr wraps a reader of (credential, request): None when there is no credential
    (called here, not only when ATTRIBUTES is built at import)."""
    get = rules_mod._cred_attr(lambda c, r: (c.holder, r.identity))
    cred = Credential(0, "billing-0", frozenset({READ}), 1.0, 0.0)
    assert get(req(world, credential=cred)) == ("billing-0", "support-0")
    assert get(req(world, credential=None)) is None


def test_every_attribute_in_a_rule_compares_its_field(world):
    """`attr: value` holds on the request with that value and not with `ne`, on both paths."""
    r, expected = _every_attribute(world)
    for attr, value in expected.items():
        p = compile_rules({"rules": [{"id": "eq", "effect": "allow", "when": {attr: value}},
                                     {"id": "ne", "effect": "deny", "when": {attr: {"ne": value}}}]})
        assert p.evaluate(r) == p.evaluate_each(r) == Decision(True, ("eq",)), attr
    none = replace(r, credential=None)
    p = compile_rules({"rules": [{"id": "no-token", "effect": "allow", "when": {
        "token.present": False, "token.holder_matches": None, "token.task_scoped": None}}]})
    assert p.evaluate(none).allow and not p.evaluate(r).allow


@pytest.mark.parametrize(("op", "value", "matching"), [
    ("eq", 10, [10]), ("ne", 10, [9, 11]), ("lt", 10, [9]), ("le", 10, [9, 10]),
    ("gt", 10, [11]), ("ge", 10, [10, 11]), ("in", [9, 11], [9, 11]), ("not_in", [9, 11], [10])])
def test_each_operator(world, op, value, matching):
    p = compile_rules({"rules": [{"id": "r", "effect": "allow", "when": {"bytes_out": {op: value}}}]})
    for b in (9, 10, 11):
        r = req(world, bytes_out=b)
        assert p.evaluate(r).allow == p.evaluate_each(r).allow == (b in matching), b


def test_conditions_on_arguments_hold_only_for_calls_that_carry_them(world):
    p = compile_rules({"default": "allow", "rules": [
        {"id": "big", "effect": "deny", "when": {"args.amount": {"gt": 100}}},
        {"id": "undeclared", "effect": "deny", "when": {"args.to.known": False}},
        {"id": "to-bob", "effect": "deny", "when": {"args.to": "bob"}}]})
    cases = [({}, frozenset(), ("default-allow",)),
             ({"amount": 150}, frozenset(), ("big",)),
             ({"amount": 50}, frozenset(["amount"]), ("default-allow",)),
             ({"to": "ann"}, frozenset(["to"]), ("undeclared",)),
             ({"to": "ann"}, frozenset(), ("default-allow",)),
             ({"to": "bob", "amount": 101}, frozenset(["to"]), ("big", "undeclared", "to-bob"))]
    for args, unknown, reasons in cases:
        r = req(world, args=args, args_unknown=unknown)
        assert p.evaluate(r).reasons == p.evaluate_each(r).reasons == reasons, args


# --------------------------------------------------------------------------- decisions

def test_defaults_and_deny_overrides_allow_naming_every_deciding_rule(world):
    allow_all = compile_rules({"default": "allow", "rules": []})
    deny_all = compile_rules({"rules": []})
    r = req(world)
    assert allow_all.evaluate(r) == allow_all.evaluate_each(r) == Decision(True, ("default-allow",))
    assert deny_all.evaluate(r) == deny_all.evaluate_each(r) == Decision(False, ("default-deny",))
    p = compile_rules({"rules": [
        {"id": "a", "effect": "allow"},
        {"id": "b", "effect": "allow", "when": {"action": "read"}},
        {"id": "d1", "effect": "deny", "when": {"risk": {"gt": 0.5}}},
        {"id": "d2", "effect": "deny", "when": {"risk": {"gt": 0.8}, "tool": "crm_api"}},
        {"id": "d3", "effect": "deny", "when": {"action": "write"}}]})
    for risk, perm, want in ((0.1, READ, Decision(True, ("a", "b"))),
                             (0.1, WRITE, Decision(False, ("d3",))),
                             (0.6, READ, Decision(False, ("d1",))),
                             (0.9, WRITE, Decision(False, ("d1", "d2", "d3")))):
        r = req(world, perm, risk=risk)
        assert p.evaluate(r) == p.evaluate_each(r) == want


def test_rule_ids_default_to_their_position_and_are_text(world):
    p = compile_rules({"rules": [{"effect": "deny", "when": {"risk": {"gt": 0.5}}},
                                 {"id": 7, "effect": "deny", "when": {"risk": {"gt": 0.8}}}]})
    assert p.evaluate(req(world, risk=0.9)).reasons == ("rule-0", "7")


def test_erroring_rules_fail_safe_on_the_careful_path(world):
    """A rule that raises: a forbid still forbids, a permit never allows, errors are named."""
    boom = {"bytes_out": {"gt": 10}}  # None > 10 raises TypeError
    r = req(world, bytes_out=None)

    def decide(rules, default="deny"):
        p = compile_rules({"default": default, "rules": rules})
        d = p.evaluate(r)
        assert d == p.evaluate_each(r)
        return d

    d = decide([{"id": "x", "effect": "deny", "when": boom}], "allow")
    assert (d.allow, d.reasons, len(d.errors)) == (False, ("evaluation-error",), 1)
    assert d.errors[0].startswith("x: TypeError: ")
    d = decide([{"id": "x", "effect": "deny", "when": boom},
                {"id": "y", "effect": "deny", "when": {"action": "read"}}])
    assert (d.allow, d.reasons, len(d.errors)) == (False, ("y",), 1)
    d = decide([{"id": "x", "effect": "allow", "when": boom}], "allow")
    assert (d.allow, d.reasons) == (False, ("evaluation-error",))
    assert d.errors[0].startswith("x: TypeError: ")
    d = decide([{"id": "x", "effect": "allow", "when": boom},
                {"id": "y", "effect": "allow", "when": {"action": "read"}}])
    assert (d.allow, d.reasons, len(d.errors)) == (True, ("y",), 1)


def test_rules_carry_their_static_tool_and_action_filters():
    p = compile_rules({"rules": [
        {"id": "a", "effect": "allow", "when": {"tool": "crm_api", "action": {"in": ["read", "write"]}}},
        {"id": "b", "effect": "allow", "when": {"tool": {"ne": "crm_api"}, "action": {"in": ["read"], "ne": "x"}}},
        {"id": "c", "effect": "deny", "when": {"rate": {"gt": 1}}},
        {"id": "d", "effect": "deny"}]})
    a, b, c, d = p.rules
    assert (a.tools, a.actions) == (frozenset({"crm_api"}), frozenset({"read", "write"}))
    assert (b.tools, b.actions) == (None, None)
    assert (c.tools, c.actions, c.stateful, a.stateful) == (None, None, True, False)
    assert (d.tools, d.actions, d.condition) == (None, None, "True")
    # The filter only skips rules that cannot apply; the others still test their conditions.
    assert p._rules_for("crm_api", "read") == ((c, d), (a, b))
    assert p._rules_for("http", "read") == ((c, d), (b,))
    assert p._rules_for("crm_api", "delete") == ((c, d), (b,))
    assert p._rules_for("http", "write") == ((c, d), (b,))


def test_rate_window_edges_by_hand(world):
    """Window 10 s, limit 1: requests at 0 and 5. At 9.9 both are inside (2 > 1); at 10 the one
    at 0 has left (the window is (t - 10, t]); a new key has an empty window."""
    w = rules_mod.RateWindow(rules_mod.ATTRIBUTES["tool"], 10.0, 1)
    for t in (0.0, 5.0):
        w.observe(req(world, time=t))
    assert [w.exceeded(req(world, time=t)) for t in (9.9, 10.0, 15.0)] == [True, False, False]
    assert not w.exceeded(req(world, ("docs", "read", "wiki"), time=9.9))
    # Keyed by tool: another identity on the same tool shares it.
    assert w.exceeded(req(world, time=9.9, identity="billing-0"))
    w.observe(req(world, time=10.0))  # drops the request at 0
    assert w.exceeded(req(world, time=14.9)) and not w.exceeded(req(world, time=15.0))
    zero = rules_mod.RateWindow(rules_mod.ATTRIBUTES["identity"], 1.0, 0)
    zero.observe(req(world, time=0.0))
    assert zero.exceeded(req(world, time=0.5)) and not zero.exceeded(req(world, time=1.0))


def test_observe_feeds_every_window_of_the_policy(world):
    p = compile_rules({"default": "allow", "rules": [
        {"id": "burst", "effect": "deny", "when": {"rate": {"window": "10s", "gt": 1}}},
        {"id": "tool-burst", "effect": "deny", "when": {"rate": {"key": "tool", "gt": 2}}}]})
    assert [(w.window, w.limit) for w in p.windows] == [(10.0, 1), (60.0, 2)]
    for t, ident in ((0.0, "support-0"), (1.0, "support-1"), (2.0, "support-0")):
        p.observe(req(world, time=t, identity=ident))
    assert p.evaluate(req(world, time=3.0, identity="support-0")).reasons == ("burst", "tool-burst")
    assert p.evaluate(req(world, time=3.0, identity="support-1")).reasons == ("tool-burst",)
    assert p.evaluate(req(world, ("docs", "read", "wiki"), time=3.0,
                          identity="support-1")).reasons == ("default-allow",)


# --------------------------------------------------------------------------- engines: shared parts


def test_fields_are_the_attributes_flattened_plus_the_arguments(world):
    r = req(world, args={"amount": 80.6, "cents": 81.5, "n": 3, "to": "bob"},
            args_unknown=frozenset({"to"}))
    assert set(engines.FIELDS) == {k.replace(".", "_") for k in rules_mod.ATTRIBUTES} | {
        "args", "args_known"}
    assert engines.FIELDS["task_active"](r) is True and engines.FIELDS["resource_name"](r) == "crm"
    # Floats are rounded (Cedar and Rego compare whole numbers); the rest pass unchanged.
    assert engines.FIELDS["args"](r) == {"amount": 81, "cents": 82, "n": 3, "to": "bob"}
    assert engines.FIELDS["args_known"](r) == {"amount": True, "cents": True, "n": True,
                                               "to": False}


def test_fields_used_are_checked_sorted_and_unique():
    assert engines.fields_used(["tool", "attested", "tool", "rate_exceeded"], "src") == [
        "attested", "rate_exceeded", "tool"]
    with pytest.raises(PolicyError) as e:
        engines.fields_used(["tool", "atested", "qqqqqq"], "src")
    assert str(e.value) == ("src: unknown request fields 'atested' (did you mean 'attested'?), "
                            "'qqqqqq'")


def test_rate_window_declaration():
    assert engines.rate_window(None, False, "src") is None
    with pytest.raises(PolicyError, match=r"^src: reads rate_exceeded but declares no rate "
                                          r"window$"):
        engines.rate_window(None, True, "src")
    w = engines.rate_window({"key": "tool", "window": "10s", "gt": "3"}, False, "src")
    assert (w.key, w.window, w.limit) == (rules_mod.ATTRIBUTES["tool"], 10.0, 3)
    for bad in ({"window": "10s"}, {"gt": 1, "every": "1s"}, 5, [("gt", 1)]):
        with pytest.raises(PolicyError, match=r"^src: rate: expected \{key: attribute"):
            engines.rate_window(bad, True, "src")
    with pytest.raises(PolicyError, match=r"^src: rate\.key: unknown attribute 'nope'$"):
        engines.rate_window({"key": "nope", "gt": 1}, True, "src")
    with pytest.raises(PolicyError, match=r"^src: rate\.window: expected a duration"):
        engines.rate_window({"window": "soon", "gt": 1}, True, "src")
    assert engines.rate_window({"gt": 1}, True, "src").window == 60.0  # the default window


def test_load_policy_by_engine(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("rules:\n  - {id: a, effect: allow}\n")
    assert [r.id for r in engines.load_policy("rules", path).rules] == ["a"]
    with pytest.raises(ValueError, match=r"^unknown policy engine 'opa'; known: rules, cedar, "
                                         r"rego$"):
        engines.load_policy("opa", path)


def test_require_names_the_extra_to_install(monkeypatch):
    import json

    monkeypatch.setitem(engines._MODULES, "cedar", "json")
    assert engines.require("cedar") is json
    monkeypatch.setitem(engines._MODULES, "cedar", "simharness_no_such_module")
    with pytest.raises(engines.MissingExtra) as e:
        engines.require("cedar")
    assert str(e.value) == ("engine 'cedar' needs the optional extra: "
                            "pip install 'simharness[cedar]'")
    assert isinstance(e.value, ValueError) and e.value.__suppress_context__


def test_time_decisions_warms_up_then_times_each_request_repeat_times():
    """A policy that counts its calls: 7 requests, the default 5 timings of each after a
    warm-up of min(50, 7) calls, in request order each time."""
    calls = []

    class Counting:
        def evaluate(self, r):
            calls.append(r)

    ns = engines.time_decisions(Counting(), list(range(7)))
    assert len(calls) == 7 + 5 * 7 and calls[7:] == list(range(7)) * 5
    assert ns.shape == (7,) and (ns >= 0).all()
    calls.clear()
    engines.time_decisions(Counting(), list(range(7)), repeat=2, warmup=3)
    assert calls == [0, 1, 2] + list(range(7)) * 2
    calls.clear()
    engines.time_decisions(Counting(), list(range(60)), repeat=1)  # the default warm-up: 50
    assert calls == list(range(50)) + list(range(60))


def test_sample_requests_cover_both_sides_of_every_condition(world):
    """Shares drawn as documented (2000 requests, loose bounds around each probability), one
    bursty stretch in four (gaps of 0.05 s against 1 s), the default seed 0."""
    res = list(world.resources.values())
    n = 2000
    rs = engines.sample_requests(n, res)
    assert [(r.identity, r.perm, r.time) for r in rs] == [
        (r.identity, r.perm, r.time) for r in engines.sample_requests(n, res, seed=0)]
    assert {r.identity for r in rs} == {"agent-0", "agent-1", "agent-2"}
    assert {r.perm for r in rs} == {(f"{x.name}_api", a, x.name) for x in res
                                    for a in ("read", "write", "send")}
    assert all(r.tool == r.perm[0] and r.action == r.perm[1] and r.resource.name == r.perm[2]
               for r in rs)
    times = np.array([r.time for r in rs])
    gaps = np.diff(np.concatenate([[0.0], times]))
    assert (gaps > 0).all()
    assert 0.03 < gaps[200:400].mean() < 0.08 and 0.8 < gaps[:200].mean() < 1.2
    assert 0.8 < gaps[400:600].mean() < 1.2 and 0.03 < gaps[1000:1200].mean() < 0.08

    def share(pred):
        return sum(map(pred, rs)) / n

    with_token = [r for r in rs if r.credential is not None]
    assert 0.45 < len(with_token) / n < 0.55
    assert all(c.perms == {r.perm} and c.issued == r.time and c.weight == 1.0
               for r in with_token for c in [r.credential])
    own = sum(r.credential.holder == r.identity for r in with_token) / len(with_token)
    assert 0.65 < own < 0.75
    assert {r.credential.holder for r in with_token} - {r.identity for r in rs} == {"someone-else"}
    scoped = sum(r.credential.task_id == 0 for r in with_token) / len(with_token)
    assert {r.credential.task_id for r in with_token} == {-1, 0} and 0.45 < scoped < 0.55
    assert 0.82 < share(lambda r: r.entitled) < 0.88
    assert 0.82 < share(lambda r: r.attested) < 0.88
    assert 0.87 < share(lambda r: r.task_active) < 0.93
    assert 0.82 < share(lambda r: r.in_scope) < 0.88
    assert 0.77 < share(lambda r: r.origin_permits) < 0.83
    assert {r.bytes_out for r in rs} == {0, 512, 1_000_000, 1_000_001, 5_000_000}
    assert {r.chain_depth for r in rs} == {0, 1, 2} and 0.45 < share(lambda r: r.chain_depth == 0) < 0.55
    assert {r.token_mode for r in rs} == {"none", "exchange", "passthrough"}
    assert all(0 <= r.risk < 1 for r in rs) and 0.45 < np.mean([r.risk for r in rs]) < 0.55
    assert [r.task_id for r in rs] == list(range(n))
    assert all((r.identity_mode, r.source, r.agent, r.archetype, r.platform, r.task_type,
                r.chain_origin, r.data_sensitivity)
               == ("per_agent", "agent", r.identity, r.identity, "first_party", "task",
                   r.identity, None) for r in rs)
    with_args = [r for r in rs if r.args]
    assert 0.30 < len(with_args) / n < 0.37
    assert {r.args["amount"] for r in with_args} == {10.0, 80.5, 900.0}
    named = [r for r in with_args if "recipient" in r.args]
    assert 0.45 < len(named) / len(with_args) < 0.55
    assert all(r.args["recipient"] == f"recipient:t{r.task_id}" for r in named)
    assert 0.27 < sum("recipient" in r.args_unknown for r in named) / len(named) < 0.40
    assert all(r.args_unknown <= set(r.args) for r in rs)


def test_world_requests_draw_from_the_world(world):
    rs = engines.world_requests(world)
    assert len(rs) == 300
    assert [(r.perm, r.time) for r in rs] == [(r.perm, r.time)
                                              for r in engines.world_requests(world, 300, 0)]
    assert {r.perm for r in rs} <= world.all_perms and len({r.perm for r in rs}) > 5
    assert {r.resource.name for r in rs} <= set(world.resources)


# --------------------------------------------------------------------------- generated task policies
# The text render_task_policy writes for a small task policy, written out by hand.

def _task_policy(actions=frozenset({"send"}), destinations=frozenset({"outbound_mail"}),
                 to=frozenset({"bob", "ann"})):
    from simharness.controls.task_policy import TaskPolicy

    return TaskPolicy(task_id=4, scope=frozenset({("http", "send", "paste"), READ}),
                      values={"to": to, "amount": frozenset({"1"})}, limits={"amount": 100.5},
                      destinations=destinations, actions=actions)


PERMITS = [{"id": f"permit-{i}", "effect": "allow", "when": {
    "attested": True, "entitled": True, "task.active": True, "task.id": 4, "tool": tool,
    "action": action, "resource": resource}}
    for i, (tool, action, resource) in enumerate([READ, ("http", "send", "paste")])]


def test_generated_rules_file():
    import yaml

    from simharness.policy.generate import render_task_policy

    text = render_task_policy(_task_policy(), "rules")
    on = {"action": {"in": ["send"]}}
    assert yaml.safe_load(text) == {"policy_version": 1, "rules": [
        *PERMITS,
        {"id": "forbid-destination", "effect": "deny",
         "when": {"resource.external": True, "resource": {"not_in": ["outbound_mail"]}}},
        {"id": "forbid-to", "effect": "deny", "when": {**on, "args.to": {"not_in": ["ann", "bob"]}}},
        {"id": "forbid-amount", "effect": "deny", "when": {**on, "args.amount": {"gt": 100.5}}}]}
    assert text.startswith("policy_version: 1\nrules:\n- id: permit-0\n")  # in order, not sorted
    every = yaml.safe_load(render_task_policy(_task_policy(actions=None), "rules"))["rules"]
    assert [r["when"] for r in every[3:]] == [{"args.to": {"not_in": ["ann", "bob"]}},
                                              {"args.amount": {"gt": 100.5}}]


def test_generated_cedar_policy():
    from simharness.policy.generate import render_task_policy

    def permit(i, tool, action, resource):
        return (f'@id("permit-{i}")\npermit (principal, action, resource)\nwhen {{\n'
                "  context.attested && context.entitled && context.task_active &&\n"
                f'  context.task_id == 4 && context.tool == "{tool}" &&\n'
                f'  context.action == "{action}" && context.resource == "{resource}"\n}};')

    forbid = '@id("{}")\nforbid (principal, action, resource)\nwhen {{ {} }};'
    on = '["send"].contains(context.action) && '
    assert render_task_policy(_task_policy(), "cedar") == "\n\n".join([
        permit(0, *READ), permit(1, "http", "send", "paste"),
        forbid.format("forbid-destination", 'context.resource_external && '
                      '!(["outbound_mail"].contains(context.resource))'),
        forbid.format("forbid-to", on + 'context.args has to && '
                      '!(["ann", "bob"].contains(context.args.to))'),
        forbid.format("forbid-amount", on + "context.args has amount && "
                      "context.args.amount > 101")]) + "\n"
    text = render_task_policy(_task_policy(actions=None), "cedar")
    assert "contains(context.action)" not in text
    assert text.endswith("when { context.args has amount && context.args.amount > 101 };\n")


def test_generated_rego_policy():
    from simharness.policy.generate import render_task_policy

    def permit(i, tool, action, resource):
        return [f'permit contains "permit-{i}" if {{', "\tinput.attested == true",
                "\tinput.entitled == true", "\tinput.task_active == true", "\tinput.task_id == 4",
                f'\tinput.tool == "{tool}"', f'\tinput.action == "{action}"',
                f'\tinput.resource == "{resource}"', "}", ""]

    on = '\tinput.action in {"send"}'
    expected = ["package simharness.task", "", "import rego.v1", "",
                *permit(0, *READ), *permit(1, "http", "send", "paste"),
                'deny contains "forbid-destination" if {', "\tinput.resource_external == true",
                '\tnot input.resource in {"outbound_mail"}', "}", "",
                'deny contains "forbid-to" if {', on, "\tv := input.args.to",
                '\tnot v in {"ann", "bob"}', "}", "",
                'deny contains "forbid-amount" if {', on, "\tinput.args.amount > 101", "}", "",
                'deny contains "forbid-amount" if {', on, "\tv := input.args.amount",
                "\tnot is_number(v)", "}", "",
                'default decision := {"allow": false, "reasons": ["default-deny"]}', "",
                'decision := {"allow": false, "reasons": sort(deny)} if count(deny) > 0', "",
                'decision := {"allow": true, "reasons": sort(permit)} if {',
                "\tcount(deny) == 0", "\tcount(permit) > 0", "}", ""]
    assert render_task_policy(_task_policy(), "rego") == "\n".join(expected)
    # No allowed destination or declared value: the forbid holds unconditionally.
    text = render_task_policy(_task_policy(actions=None, destinations=frozenset(),
                                           to=frozenset()), "rego")
    assert ('deny contains "forbid-destination" if {\n\tinput.resource_external == true\n'
            '\ttrue\n}') in text
    assert 'deny contains "forbid-to" if {\n\tv := input.args.to\n\ttrue\n}' in text
    assert "input.action in" not in text


def test_a_policy_without_a_named_source_calls_itself_rules(world):
    with pytest.raises(PolicyError, match=r"^<rules>: rules\.1: duplicate rule id 'a'$"):
        compile_rules({"rules": [{"id": "a", "effect": "allow"}, {"id": "a", "effect": "allow"}]})
    assert compile_rules({"rules": []}).source == "<rules>"
    assert rules_mod.Policy([], []).source == "<rules>"
    assert rules_mod.Policy([], []).evaluate(req(world)) == Decision(False, ("default-deny",))


# --------------------------------------------------------------------------- Cedar and Rego adapters

needs_cedar = pytest.mark.skipif(importlib.util.find_spec("cedarpy") is None,
                                 reason="needs the cedar extra (pip install 'simharness[cedar]')")
needs_rego = pytest.mark.skipif(importlib.util.find_spec("regopy") is None,
                                reason="needs the rego extra (pip install 'simharness[rego]')")


def _policy_file(tmp_path, engine, text):
    path = tmp_path / f"p.{engine}"
    path.write_text(text)
    return path


@needs_cedar
def test_cedar_load_errors(tmp_path):
    def load(text):
        return engines.load_policy("cedar", _policy_file(tmp_path, "cedar", text))

    with pytest.raises(PolicyError, match=r"p\.cedar: context \['risk'\] are floats, which Cedar "
                                          r"cannot compare$"):
        load("permit (principal, action, resource) when { context.risk > 0 };")
    with pytest.raises(PolicyError, match=r"p\.cedar: one rate window per policy set"):
        load('@rate_gt("1")\nforbid (principal, action, resource) when { context.rate_exceeded };\n'
             '@rate_gt("2")\nforbid (principal, action, resource) when { context.rate_exceeded };')
    with pytest.raises(PolicyError, match=r"p\.cedar: reads rate_exceeded but declares no rate"):
        load("forbid (principal, action, resource) when { context.rate_exceeded };")
    with pytest.raises(PolicyError, match=r"^\S*p\.cedar: "):
        load("permit (principal, action, resource) when { context.attested ")
    with pytest.raises(PolicyError, match=r"nope\.cedar: "):
        engines.load_policy("cedar", tmp_path / "nope.cedar")
    # Field names inside strings and comments are not fields the policy reads.
    p = load('// context.atested\npermit (principal, action, resource) when '
             '{ context.tool == "context.qqq" };')
    assert p._fields == [("tool", engines.FIELDS["tool"])]


@needs_cedar
def test_cedar_rate_window_and_errors(tmp_path, world):
    p = engines.load_policy("cedar", _policy_file(tmp_path, "cedar", (
        '@id("ok")\npermit (principal, action, resource) when { context.attested };\n'
        '@id("burst")\n@rate_key("identity")\n@rate_window("10s")\n@rate_gt("1")\n'
        "forbid (principal, action, resource) when { context.rate_exceeded };\n"
        '@id("foreign-token")\nforbid (principal, action, resource) when '
        "{ !context.token_holder_matches };")))
    assert [(w.window, w.limit) for w in p.windows] == [(10.0, 1)]
    cred = Credential(0, "support-0", frozenset({READ}), 1.0, 0.0)
    r0 = req(world, time=0.0, credential=cred)
    assert p.evaluate(r0) == Decision(True, ("ok",))
    for t in (0.0, 1.0):
        p.observe(req(world, time=t))
    assert p.evaluate(req(world, time=2.0, credential=cred)) == Decision(False, ("burst",))
    assert p.evaluate(req(world, time=12.0, credential=cred)).allow
    # No token: token_holder_matches is absent, reading it errs, and the erroring forbid denies
    # (Cedar would skip it and let the permit through).
    d = p.evaluate(req(world, time=100.0))
    assert (d.allow, d.reasons) == (False, ("evaluation-error",)) and d.errors
    d = p.evaluate(req(world, time=100.0, attested=False, credential=replace(cred, holder="x")))
    assert d == Decision(False, ("foreign-token",))
    d = p.evaluate(req(world, time=100.0, attested=False, credential=cred))
    assert d == Decision(False, ("default-deny",))


@needs_cedar
def test_cedar_tells_apart_resources_that_share_a_name(tmp_path, world):
    p = engines.load_policy("cedar", _policy_file(tmp_path, "cedar", (
        '@id("external")\npermit (principal, action, resource) when { resource.external };')),
        world.resources.values())
    crm = world.resources["crm"]
    outside = crm.model_copy(update={"external": True})
    assert not p.evaluate(req(world)).allow
    assert p.evaluate(req(world, resource=outside)) == Decision(True, ("external",))
    assert not p.evaluate(req(world, resource=crm.model_copy())).allow  # equal: the known one
    assert p.evaluate(req(world, resource=outside)).allow


@needs_rego
def test_rego_load_errors(tmp_path):
    def load(text):
        return engines.load_policy("rego", _policy_file(tmp_path, "rego", text))

    with pytest.raises(PolicyError, match=r"p\.rego: no `package` line$"):
        load("# package simharness\nimport rego.v1\n")
    with pytest.raises(PolicyError, match=r"nope\.rego: "):
        engines.load_policy("rego", tmp_path / "nope.rego")
    with pytest.raises(PolicyError, match=r"p\.rego: rate_limits must map one rule id"):
        load('package x\nimport rego.v1\nrate_limits := {"a": {"gt": 1}, "b": {"gt": 2}}\n'
             'decision := {"allow": input.rate_exceeded, "reasons": []}\n')
    with pytest.raises(PolicyError, match=r"p\.rego: "):
        load("package x\nimport rego.v1\ndecision := {\n")
    with pytest.raises(PolicyError, match=r"unknown request fields 'qqqq'"):
        load('package x\nimport rego.v1\ndecision := {"allow": input["qqqq"], "reasons": []}\n')
    # Comments are not code.
    p = load('package x.y\nimport rego.v1\n# input.atested\n'
             'decision := {"allow": input["tool"] == "crm_api", "reasons": []}\n')
    assert p._fields == [("tool", engines.FIELDS["tool"])] and p._entry == "x/y/decision"


@needs_rego
def test_rego_decisions_rate_window_and_bad_output(tmp_path, world):
    p = engines.load_policy("rego", _policy_file(tmp_path, "rego", (
        "package x\nimport rego.v1\n"
        'rate_limits := {"burst": {"key": "identity", "window": "10s", "gt": 1}}\n'
        'default decision := {"allow": false, "reasons": []}\n'
        'decision := {"allow": false, "reasons": ["burst"]} if input.rate_exceeded\n'
        'decision := {"allow": true, "reasons": ["ok"]} if {\n'
        "\tnot input.rate_exceeded\n\tinput.attested\n}\n")))
    assert [(w.window, w.limit) for w in p.windows] == [(10.0, 1)]
    assert p.evaluate(req(world, time=0.0)) == Decision(True, ("ok",))
    assert p.evaluate(req(world, time=0.0, attested=False)) == Decision(False, ("default-deny",))
    for t in (0.0, 1.0):
        p.observe(req(world, time=t))
    assert p.evaluate(req(world, time=2.0)) == Decision(False, ("burst",))
    assert p.evaluate(req(world, time=12.0)) == Decision(True, ("ok",))
    bad = engines.load_policy("rego", _policy_file(tmp_path, "rego", (
        'package x\nimport rego.v1\ndecision := {"allow": true, "reasons": [1]}\n')))
    d = bad.evaluate(req(world))
    assert (d.allow, d.reasons) == (False, ("evaluation-error",))
    assert d.errors[0].startswith("TypeError: decision must be")


@needs_cedar
def test_cedar_reasons_without_ids_and_engine_failures(tmp_path, world, monkeypatch):
    """A policy without @id is named by Cedar's own id (policy0, policy1, ... in file order);
    an exception inside the engine is a deny naming it."""
    from types import SimpleNamespace

    p = engines.load_policy("cedar", _policy_file(tmp_path, "cedar", (
        "permit (principal, action, resource) when { context.attested };\n"
        "forbid (principal, action, resource) when { context.bytes_out > 10 };")))
    assert p.evaluate(req(world)) == Decision(True, ("policy0",))
    assert p.evaluate(req(world, bytes_out=11)) == Decision(False, ("policy1",))

    def boom(*a):
        raise RuntimeError("engine down")

    monkeypatch.setattr(p, "_cedar", SimpleNamespace(is_authorized=boom))
    assert p.evaluate(req(world)) == Decision(False, ("evaluation-error",),
                                              ("RuntimeError: engine down",))


@needs_rego
def test_rego_engine_failures_are_denials(tmp_path, world, monkeypatch):
    p = engines.load_policy("rego", _policy_file(tmp_path, "rego", (
        'package x\nimport rego.v1\ndecision := {"allow": true, "reasons": ["ok"]}\n')))
    assert p.evaluate(req(world)) == Decision(True, ("ok",))
    assert p._fields == [] and p.windows == []

    class NotOk:
        def ok(self):
            return False

        def __str__(self):
            return "broken bundle"

    monkeypatch.setattr(p._rego, "query_bundle_entrypoint", lambda *a: NotOk(), raising=False)
    assert p.evaluate(req(world)) == Decision(False, ("evaluation-error",),
                                              ("RuntimeError: broken bundle",))


def test_descriptions_and_the_version_are_accepted_where_the_format_allows_them(world):
    p = compile_rules({"policy_version": 1, "description": "whole file", "default": "allow",
                       "rules": [{"id": "a", "effect": "deny", "description": "one rule",
                                  "when": {"action": "write"}}]})
    assert p.evaluate(req(world)).allow and not p.evaluate(req(world, WRITE)).allow


@needs_cedar
def test_cedar_resource_entities_carry_every_attribute(tmp_path, world):
    """crm in the baseline: confidential, crm.saas.example, internal, approved, scoped auth."""
    p = engines.load_policy("cedar", _policy_file(tmp_path, "cedar", (
        '@id("crm")\npermit (principal, action, resource) when { resource.name == "crm" && '
        'resource.sensitivity == "confidential" && resource.destination == "crm.saas.example" '
        '&& !resource.external && resource.approved && resource.auth == "scoped" };')),
        world.resources.values())
    assert p.evaluate(req(world)) == Decision(True, ("crm",))
    crm = world.resources["crm"]
    for change in ({"auth": "shared"}, {"approved": False}, {"destination": "x.example"}):
        assert not p.evaluate(req(world, resource=crm.model_copy(update=change))).allow, change


@needs_cedar
def test_cedar_request_entities_are_typed_identity_action_resource(tmp_path, world):
    p = engines.load_policy("cedar", _policy_file(tmp_path, "cedar", (
        '@id("exact")\npermit (principal == Identity::"support-0", action == Action::"read", '
        'resource == Resource::"crm");')), world.resources.values())
    assert p.evaluate(req(world)) == Decision(True, ("exact",))
    assert not p.evaluate(req(world, identity="support-1")).allow
    assert not p.evaluate(req(world, WRITE)).allow


def test_sample_requests_draw_each_condition_independently(world):
    """Each condition has its own uniform draw: token modes do not follow risk, and a
    task-scoped token is sometimes held by someone else (both sides of the holder check)."""
    rs = engines.sample_requests(2000, list(world.resources.values()))
    low_risk = {r.token_mode for r in rs if r.risk < 1 / 3}
    assert low_risk == {"none", "exchange", "passthrough"}
    scoped = [r.credential for r in rs if r.credential is not None and r.credential.task_id == 0]
    others = sum(c.holder == "someone-else" for c in scoped) / len(scoped)
    assert 0.2 < others < 0.4


def test_rules_problems_keep_checking_after_an_unknown_operator():
    assert _when(tool={"like": "x", "eq": 5}) == [(("tool", "eq"), "expected text, got 5 (quote it)")]
    # ... and past an ordering on text (left to the runtime).
    assert _when(tool={"gt": 5, "eq": 6}) == [(("tool", "eq"), "expected text, got 6 (quote it)")]


@needs_rego
def test_rego_failing_built_in_is_an_error_not_undefined(tmp_path, world):
    """to_number("support-0") fails: strict built-ins make that an evaluation error (deny);
    lenient ones would make the forbid undefined and let the permit through."""
    p = engines.load_policy("rego", _policy_file(tmp_path, "rego", (
        "package x\nimport rego.v1\nforbidden if to_number(input.identity) > 0\n"
        'decision := {"allow": true, "reasons": ["ok"]} if not forbidden\n')))
    d = p.evaluate(req(world))
    assert (d.allow, d.reasons) == (False, ("evaluation-error",)) and d.errors


def test_rules_problems_keep_checking_after_a_bad_when():
    assert rules_problems({"rules": [{"effect": "allow", "when": [1]}, {"effect": "permit"}]}) == [
        (("rules", 0, "when"), "expected a mapping of attribute: condition"),
        (("rules", 1, "effect"), "must be allow or deny, got 'permit'")]


@needs_cedar
def test_cedar_erroring_permit_with_a_matching_forbid_names_the_forbid(tmp_path, world):
    p = engines.load_policy("cedar", _policy_file(tmp_path, "cedar", (
        '@id("own-token")\npermit (principal, action, resource) when { context.token_holder_matches };\n'
        '@id("big")\nforbid (principal, action, resource) when { context.bytes_out > 10 };')))
    d = p.evaluate(req(world, bytes_out=11))  # no token: the permit errs, the forbid holds
    assert (d.allow, d.reasons) == (False, ("big",)) and d.errors


def test_sample_requests_number_their_credentials_by_request():
    from simharness.spec import Resource

    rs = engines.sample_requests(50, [Resource(name="crm", sensitivity="internal",
                                               destination="crm.example")])
    assert [r.credential.id for r in rs if r.credential] == [
        i for i, r in enumerate(rs) if r.credential]


def test_generated_policies_sort_mixed_declared_values_as_text():
    """Declared values 3 and "b" (a number and a text) sort as text: 3 before "b"."""
    import yaml

    from simharness.policy.generate import render_task_policy

    tp = _task_policy(to=frozenset({"b", 3}))
    assert '\tnot v in {3, "b"}' in render_task_policy(tp, "rego")
    assert '!([3, "b"].contains(context.args.to))' in render_task_policy(tp, "cedar")
    rules = yaml.safe_load(render_task_policy(tp, "rules"))["rules"]
    assert rules[3]["when"]["args.to"] == {"not_in": [3, "b"]}


@needs_rego
def test_rego_forbidden_built_in_written_with_spaces_is_named_without_them(tmp_path):
    path = _policy_file(tmp_path, "rego", (
        'package x\nimport rego.v1\ndecision := {"allow": time . now_ns() > 0, "reasons": []}\n'))
    with pytest.raises(PolicyError, match=r"p\.rego: time\.now_ns\(\) is not allowed: a decision "
                                          r"may not depend on the wall clock"):
        engines.load_policy("rego", path)


def test_rate_window_drops_expired_requests_one_by_one(world):
    """Requests at 0, 5 and 6, window 10 s, limit 1: at 10.5 the one at 0 has left and two
    remain (2 > 1: exceeded); at 15.5 one remains (not exceeded)."""
    w = rules_mod.RateWindow(rules_mod.ATTRIBUTES["identity"], 10.0, 1)
    for t in (0.0, 5.0, 6.0):
        w.observe(req(world, time=t))
    assert w.exceeded(req(world, time=10.5)) and not w.exceeded(req(world, time=15.5))


def test_render_task_policy_names_the_engines_it_knows():
    from simharness.policy.generate import render_task_policy

    with pytest.raises(ValueError) as err:
        render_task_policy(_task_policy(), "opa")
    assert str(err.value) == "unknown policy engine 'opa'; known: rules, cedar, rego"


def test_unknown_rule_keys_of_mixed_types_are_each_reported():
    """YAML may give a rule an integer key beside text ones: each unknown key is a problem, in
    text order, instead of a TypeError from sorting mixed types."""
    from simharness.policy.rules import rules_problems

    rule = {"id": "a", "effect": "allow", "when": {}, 1: "x", "zz": 2}
    assert rules_problems({"policy_version": 1, "rules": [rule]}) == [
        (("rules", 0, 1), "unknown key; known: id, effect, when, description"),
        (("rules", 0, "zz"), "unknown key; known: id, effect, when, description")]


def test_every_bad_operator_of_a_condition_is_reported():
    """A non-list `in` does not hide the next operator's problem: both come back, located."""
    from simharness.policy.rules import rules_problems

    rule = {"id": "a", "effect": "deny", "when": {"risk": {"in": "x", "gt": "y"}}}
    assert rules_problems({"policy_version": 1, "rules": [rule]}) == [
        (("rules", 0, "when", "risk", "in"), "expected a list of values"),
        (("rules", 0, "when", "risk", "gt"),
         "gt compares numbers: expected a finite number, got 'y' (risk is number)")]
