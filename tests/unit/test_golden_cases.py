"""Golden decision cases: every engine decides the shipped agent policy as the cases say."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from simharness.controls.base import Credential, Request
from simharness.policy.engines import DEFAULT_POLICIES, load_policy
from simharness.spec import Resource

CONTROLS = Path(__file__).resolve().parents[2] / "controls"
CASES = yaml.safe_load((CONTROLS / "cases" / "agent_policy.yaml").read_text())
ENGINES = ["rules"] + [e for e, mod in (("cedar", "cedarpy"), ("rego", "regopy"))
                       if importlib.util.find_spec(mod) is not None]
NOW = 100.0
#: what a planned action looks like; a case's `request` overrides some of it
BASE = {"attested": True, "entitled": True, "in_scope": True, "task.active": True,
        "resource.approved": True, "resource.external": False, "bytes_out": 0, "chain.depth": 0,
        "chain.origin_permits": True, "token.present": False, "token.holder_matches": True,
        "identity": "support-0", "tool": "crm_api", "action": "read", "prior": 0,
        "args": {}, "args_unknown": []}


def make_request(attrs: dict, time: float = NOW) -> Request:
    """A Request from rules-attribute names (unknown names fail the test)."""
    unknown = set(attrs) - set(BASE)
    assert not unknown, f"golden case uses unknown attributes {sorted(unknown)}"
    a = {**BASE, **attrs}
    res = Resource(name="crm", sensitivity="confidential", destination="crm.saas.example",
                   external=a["resource.external"], approved=a["resource.approved"])
    perm = (a["tool"], a["action"], res.name)
    cred = None
    if a["token.present"]:
        holder = a["identity"] if a["token.holder_matches"] else "someone-else"
        cred = Credential(1, holder, frozenset([perm]), 1.0, 0.0, task_id=7)
    return Request(
        time=time, identity=a["identity"], identity_mode="per_agent", attested=a["attested"],
        source="agent", agent="support", archetype="support", platform="first_party",
        tool=a["tool"], action=a["action"], resource=res, perm=perm, bytes_out=a["bytes_out"],
        data_sensitivity=None, task_id=7, task_type="answer_ticket", task_active=a["task.active"],
        in_scope=a["in_scope"], entitled=a["entitled"], chain_depth=a["chain.depth"],
        chain_origin="support-0", origin_permits=a["chain.origin_permits"],
        token_mode="exchange" if cred else "none", credential=cred, risk=0.1,
        args=a["args"], args_unknown=frozenset(a["args_unknown"]))


def decide(engine: str, attrs: dict):
    """A fresh policy's decision on the case, after its `prior` requests were observed."""
    policy = load_policy(engine, CONTROLS / DEFAULT_POLICIES[engine])
    prior = attrs.get("prior", 0)
    for i in range(prior):  # within the last second, all inside the 10 s window
        policy.observe(make_request({**attrs, "prior": 0}, NOW - 1 + i / prior))
    return policy.evaluate(make_request(attrs))


def test_cases_are_well_formed():
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "duplicate case names"
    for c in CASES:
        assert set(c) == {"name", "request", "expect", "reasons"}, c["name"]
        assert c["expect"] in ("allow", "deny"), c["name"]


def test_cases_cover_every_rule_and_default_deny():
    rules = load_policy("rules", CONTROLS / DEFAULT_POLICIES["rules"])
    covered = {r for c in CASES for r in c["reasons"]}
    assert {r.id for r in rules.rules} | {"default-deny"} <= covered
    # Deny overrides allow: some case matches the permit's conditions and still is denied.
    overridden = [c for c in CASES if c["expect"] == "deny" and not any(
        c["request"].get(k) is False for k in ("attested", "entitled", "in_scope", "task.active"))]
    assert overridden


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden_case(engine, case):
    d = decide(engine, case["request"])
    assert not d.errors, d.errors
    assert ("allow" if d.allow else "deny") == case["expect"], d
    assert sorted(d.reasons) == sorted(case["reasons"]), d
