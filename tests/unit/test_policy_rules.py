"""The rules engine, one semantic at a time, on hand-built requests (expectations written from
the documented semantics): rate windows, credential attributes, the compiled fast path and
the careful path, action-restricted rules."""

from __future__ import annotations

from dataclasses import replace

import pytest

from simharness.controls.base import Ledger, World
from simharness.loader import load_scenario
from simharness.policy.rules import compile_rules
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
