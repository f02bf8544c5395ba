"""Cedar and Rego beside the built-in rules: same decisions, same reasons, same runs."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter

import pytest

import simharness
from simharness.controls.base import World, make
from simharness.engine import A, simulate
from simharness.loader import load_scenario
from simharness.policy.engines import (
    DEFAULT_POLICIES,
    MissingExtra,
    load_policy,
    sample_requests,
)
from simharness.policy.rules import PolicyError
from simharness.spec import Resource
from simharness.units import Empirical
from simharness.workload import build_workload

HAVE = {"cedar": importlib.util.find_spec("cedarpy") is not None,
        "rego": importlib.util.find_spec("regopy") is not None}
REAL = [pytest.param(e, marks=pytest.mark.skipif(not HAVE[e], reason=f"{e} extra not installed"))
        for e in ("cedar", "rego")]
RESOURCES = [
    Resource(name="crm", sensitivity="confidential", destination="crm.saas.example"),
    Resource(name="ledger", sensitivity="restricted", destination="db.corp.internal"),
    Resource(name="mail", sensitivity="public", destination="smtp.example", external=True),
    Resource(name="paste", sensitivity="public", destination="paste.example", external=True,
             approved=False),
    Resource(name="shadow", sensitivity="internal", destination="shadow.internal", approved=False),
]


def shipped(engine: str):
    return load_policy(engine, simharness.loader.data_dir("controls") / DEFAULT_POLICIES[engine],
                       RESOURCES)


def test_engines_agree_on_10000_random_requests():
    engines = ["rules"] + [e for e in ("cedar", "rego") if HAVE[e]]
    if len(engines) == 1:
        pytest.skip("neither cedar nor rego is installed")
    policies = {e: shipped(e) for e in engines}
    mismatches, reasons, allowed = [], Counter(), 0
    for req in sample_requests(10_000, RESOURCES, seed=20261129):
        got = {e: p.evaluate(req) for e, p in policies.items()}
        for p in policies.values():
            p.observe(req)
        ref = got["rules"]
        allowed += ref.allow
        reasons.update(ref.reasons)
        for e, d in got.items():
            assert not d.errors, (e, d)
            if (d.allow, sorted(d.reasons)) != (ref.allow, sorted(ref.reasons)):
                mismatches.append((e, req, ref, d))
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[0]}"
    # The requests exercised every rule and both outcomes.
    ids = {r.id for r in policies["rules"].rules} | {"default-deny"}
    assert all(reasons[i] >= 50 for i in ids), reasons
    assert 500 < allowed < 9_500


@pytest.mark.parametrize("engine", REAL)
def test_missing_extra_names_it(engine, monkeypatch):
    monkeypatch.setitem(sys.modules, {"cedar": "cedarpy", "rego": "regopy"}[engine], None)
    with pytest.raises(MissingExtra, match=rf"engine '{engine}' needs the optional extra: "
                                           rf"pip install 'simharness\[{engine}\]'"):
        shipped(engine)


def test_unknown_engine():
    with pytest.raises(ValueError, match="unknown policy engine 'opa'"):
        load_policy("opa", "x")


@pytest.mark.skipif(not HAVE["cedar"], reason="cedar extra not installed")
def test_cedar_error_in_a_forbid_is_a_deny(tmp_path):
    # Cedar skips a policy that errors, so the permit alone would allow: the adapter denies.
    path = tmp_path / "p.cedar"
    path.write_text('@id("p") permit (principal, action, resource);\n'
                    '@id("f") forbid (principal, action, resource)\n'
                    '  when { !context.token_holder_matches };\n')
    req = sample_requests(1, RESOURCES)[0]
    req.credential = None  # no token: token_holder_matches is absent from the context
    d = load_policy("cedar", path).evaluate(req)
    assert not d.allow and d.reasons == ("evaluation-error",) and d.errors


@pytest.mark.skipif(not HAVE["cedar"], reason="cedar extra not installed")
def test_cedar_resources_outside_the_store_are_added_by_value():
    # Two different resources under one name must not share an entity.
    policy = load_policy("cedar", simharness.loader.data_dir("controls") / DEFAULT_POLICIES["cedar"])
    req = sample_requests(1, RESOURCES[:1])[0]
    req.attested = req.entitled = req.in_scope = req.task_active = True
    req.chain_depth, req.credential = 0, None
    ok = policy.evaluate(req)
    req.resource = req.resource.model_copy(update={"approved": False})
    bad = policy.evaluate(req)
    assert ok.allow and not bad.allow and bad.reasons == ("forbid-unapproved-destination",)


@pytest.mark.skipif(not HAVE["rego"], reason="rego extra not installed")
@pytest.mark.parametrize("body", [
    'decision := {"allow": "yes", "reasons": []}',  # not a boolean
    'decision := {"allow": true, "reasons": []} if to_number(input.identity) > 0',  # erroring
])
def test_rego_bad_decision_is_a_deny(tmp_path, body):
    path = tmp_path / "p.rego"
    path.write_text(f"package bad\nimport rego.v1\n{body}\n")
    d = load_policy("rego", path).evaluate(sample_requests(1, RESOURCES)[0])
    assert not d.allow and d.reasons == ("evaluation-error",) and d.errors


@pytest.mark.parametrize(("engine", "text"), [
    pytest.param("cedar", "permit (principal, action, resource) when { context.atested };",
                 marks=REAL[0].marks),
    pytest.param("rego", 'package x\nimport rego.v1\ndecision := {"allow": input.atested}\n',
                 marks=REAL[1].marks),
])
def test_unknown_field_is_a_load_error(tmp_path, engine, text):
    # An unknown field would never match: a forbid would silently fail open. The message
    # starts with the file.
    path = tmp_path / f"p.{engine}"
    path.write_text(text)
    with pytest.raises(PolicyError) as err:
        load_policy(engine, path)
    assert str(err.value).startswith(f"{path}: unknown request fields 'atested' (did you mean "
                                     "'attested'?)")


@pytest.mark.parametrize("engine", [REAL[1]])
def test_rego_rate_limits_that_cannot_be_evaluated_name_the_file_and_query(tmp_path, engine):
    path = tmp_path / "conflict.rego"
    path.write_text('package x\nimport rego.v1\ndecision := {"allow": input.attested, '
                    '"reasons": []}\nrate_limits = {"a": 1} if { true }\n'
                    'rate_limits = {"a": 2} if { true }\n')
    with pytest.raises(PolicyError) as err:
        load_policy(engine, path)
    assert str(err.value) == (f"{path}: data.x.rate_limits cannot be evaluated (a rule with "
                              "two different values?)")


def test_sampled_requests_cross_their_conditions():
    """The random requests used to compare engines cover every combination of the conditions
    the shipped policies test together (independent draws: no field implies another)."""
    reqs = sample_requests(3000, RESOURCES, seed=7)
    combos = Counter((r.credential is not None and r.credential.task_id >= 0, r.entitled,
                      r.in_scope, r.task_active, bool(r.args), r.risk > 0.5) for r in reqs)
    for i, j in ((0, 1), (2, 3), (4, 5)):
        pairs = {(k[i], k[j]) for k in combos}
        assert pairs == {(True, True), (True, False), (False, True), (False, False)}, (i, j)


# -- the control ------------------------------------------------------------------------------

def _world():
    return World(load_scenario("baseline", controls=["per_action_policy"]))


@pytest.mark.parametrize("engine", ["rules", *REAL])
def test_control_picks_the_engines_shipped_policy(engine):
    # The shipped profile names agent_rules.yaml; switching engine alone uses that engine's file.
    c = make("p", "per_action_policy", {"engine": engine, "policy": DEFAULT_POLICIES["rules"]},
             _world())
    assert c.policy_path.name == DEFAULT_POLICIES[engine].split("/")[-1]
    assert c.measured_service_us is None


@pytest.mark.parametrize("engine", ["rules", *REAL])
def test_measured_service_time(engine):
    c = make("p", "per_action_policy", {"engine": engine, "pdp": {"service_time": "measured"}},
             _world())
    m = c.measured_service_us
    assert m is not None and 0 < m["p50"] <= m["p99"] and m["n"] >= 200
    service = c.path()[0].service
    assert isinstance(service, Empirical) and len(service.samples) == m["n"]


def test_bad_service_time_is_rejected():
    with pytest.raises(ValueError, match="measured"):
        make("p", "per_action_policy", {"pdp": {"service_time": "mesured"}}, _world())


# -- whole runs ------------------------------------------------------------------------------

def _run_all(tmp_path):
    out = {}
    for engine in ["rules"] + [e for e in ("cedar", "rego") if HAVE[e]]:
        res = simharness.run("baseline", overrides=[
            "replications=1", "horizon=1h", f"controls.per_action_policy.engine={engine}"],
            controls=["per_action_policy"], out=tmp_path / engine)
        out[engine] = res
    return out


def test_baseline_run_same_outcomes_with_each_engine(tmp_path):
    runs = _run_all(tmp_path)
    if len(runs) == 1:
        pytest.skip("neither cedar nor rego is installed")
    ref = runs.pop("rules")
    assert ref.summary["actions_denied"].sum() > 0
    for engine, res in runs.items():
        # Fixed service time and identical decisions: the whole run is the same.
        assert res.summary.equals(ref.summary), engine
        assert res.misuse.equals(ref.misuse), engine


def test_each_engine_denies_the_same_actions_for_the_same_reasons():
    logs = {}
    for engine in ["rules"] + [e for e in ("cedar", "rego") if HAVE[e]]:
        spec = load_scenario("baseline", controls=["per_action_policy"], overrides=[
            "horizon=1h", "misuse.rate=0.5", f"controls.per_action_policy.engine={engine}"])
        entry = spec.controls[0]
        control = make(entry.name, entry.model, entry.params, World(spec))
        log = simulate(build_workload(spec, 0), control)
        # (allowed, reason set) of every action in order
        logs[engine] = [(a[A["allowed"]], frozenset(a[A["reasons"]].split(";"))) for a in log.actions]
    ref = logs.pop("rules")
    assert sum(not allowed for allowed, _ in ref) >= 20
    for engine, got in logs.items():
        assert got == ref, engine


def test_manifest_records_a_measured_service_time(tmp_path):
    res = simharness.run("baseline", controls=["per_action_policy"], out=tmp_path,
                         overrides=["replications=1", "horizon=10m", "warmup=0",
                                    "controls.per_action_policy.pdp.service_time=measured"])
    runs = [r for r in res.manifest["runs"].values() if r["control"] == "per_action_policy"]
    facts = runs[0]["facts"]
    assert facts["pdp_service_time"] == "measured"
    assert 0 < facts["measured_service_us"]["p50"] <= facts["measured_service_us"]["p99"]


@pytest.mark.skipif(importlib.util.find_spec("regopy") is None,
                    reason="needs the rego extra (pip install 'simharness[rego]')")
@pytest.mark.parametrize("call, why", [
    ("opa.runtime().env.SECRET_X", "process environment"),
    ('http.send({"method": "get", "url": "http://x"})', "network"),
    ("time.now_ns()", "wall clock"), ("rand.intn(\"k\", 10)", "random")])
def test_rego_policies_cannot_read_the_environment_network_clock_or_randomness(
        tmp_path, monkeypatch, call, why):
    """An environment variable once reached the reasons column through opa.runtime(): such
    built-ins are refused when the policy loads (validate reports it too)."""
    from simharness.loader import validate_files
    from simharness.policy.engines import PolicyError, load_policy

    monkeypatch.setenv("SECRET_X", "leaked")
    path = tmp_path / "p.rego"
    path.write_text("package simharness\n\nimport rego.v1\n\n"
                    'default decision := {"allow": false, "reasons": ["default-deny"]}\n\n'
                    f'decision := {{"allow": true, "reasons": [sprintf("%v", [{call}])]}} if {{\n'
                    "\ttrue\n}\n")
    with pytest.raises(PolicyError, match=why):
        load_policy("rego", path, [])
    problems = validate_files([path])
    assert problems and why in problems[0].message and "leaked" not in problems[0].message


def test_sampled_requests_with_roles_read_an_unlisted_identity_as_unentitled():
    """With a directory (`roles`), an identity it does not list is entitled to nothing."""
    perm = ("crm_api", "read", "crm")
    reqs = sample_requests(200, RESOURCES, seed=3, identities=("listed", "unlisted"),
                           perms=[perm], roles={"listed": frozenset({perm})})
    by = {ident: {r.entitled for r in reqs if r.identity == ident} for ident in ("listed", "unlisted")}
    assert by == {"listed": {True}, "unlisted": {False}}
