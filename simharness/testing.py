"""Checks plug-in authors can run on their own control model: `check_control(model)`."""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

from simharness.controls.base import Control, Decision, Ledger, Request, World, get_model
from simharness.spec import ScenarioSpec

_MINI = {
    "schema_version": 1,
    "name": "check_control",
    "resources": [
        {"name": "crm", "sensitivity": "confidential", "destination": "crm.example"},
        {"name": "paste", "sensitivity": "public", "destination": "paste.example",
         "external": True, "approved": False},
    ],
    "tools": [
        {"name": "crm_api", "actions": ["read", "write", "delete"], "resources": ["crm"]},
        {"name": "http", "actions": ["send"], "resources": ["paste"]},
    ],
    "agents": [{"name": "support", "count": 2, "role": {"crm_api": ["read", "write"], "http": ["send"]},
                "task_rate": "6/h", "tasks": {"t": 1}}],
    "tasks": {"t": {"steps": [{"tool": "crm_api", "action": "read", "resource": "crm"}]}},
    "controls": [{"name": "none", "model": "none"}],
}


def request_for(world: World, perm: tuple[str, str, str], archetype: str, identity: str,
                **fields: Any) -> Request:
    """A request for `perm` as a planned action of a running task would make it (attested,
    entitled by the archetype's role, in the declared scope, no credential), with `fields`
    replaced: for tests of a control's decide()."""
    res = world.resources[perm[2]]
    base: dict[str, Any] = dict(
        time=10.0, identity=identity, identity_mode="per_agent", attested=True, source="agent",
        agent=identity, archetype=archetype, platform="first_party", tool=perm[0],
        action=perm[1], resource=res, perm=perm, bytes_out=0, data_sensitivity=None,
        task_id=1, task_type="t", task_active=True, in_scope=True,
        entitled=perm in world.roles[archetype], chain_depth=0, chain_origin=identity,
        origin_permits=True, token_mode="none", credential=None, risk=0.1)
    return Request(**{**base, **fields})


def _requests(world: World, ledger: Ledger) -> list[Request]:
    """A spread of requests: in and out of role, with and without credentials, odd values."""
    role = world.roles["support"]
    cred = ledger.issue("support-0", role, 0.0, 900.0)
    expired = ledger.issue("support-0", role, 0.0, 1.0)
    out = []
    for perm in sorted(world.all_perms):
        res = world.resources[perm[2]]
        for c, attested, risk in ((cred, True, 0.1), (None, True, 0.5), (expired, False, 0.99),
                                  (cred, False, math.nan)):
            out.append(Request(
                time=10.0, identity="support-0", identity_mode="per_agent", attested=attested,
                source="agent", agent="support-0", archetype="support", platform="first_party",
                tool=perm[0], action=perm[1], resource=res, perm=perm,
                bytes_out=5_000_000 if res.external else 0, data_sensitivity=None, task_id=1,
                task_type="t", task_active=True, in_scope=perm == ("crm_api", "read", "crm"),
                entitled=perm in role, chain_depth=0, chain_origin="support-0",
                origin_permits=perm in role, token_mode="none", credential=c, risk=risk))
    return out


def check_control(model: str | type[Control], params: dict[str, Any] | None = None) -> None:
    """Raise AssertionError unless the model behaves as the engine requires: `decide` returns a
    Decision, is deterministic, does not mutate the request, and errors never become allows."""
    cls = get_model(model) if isinstance(model, str) else model
    spec = ScenarioSpec.model_validate(_MINI)
    world = World(spec)
    control = cls("check", dict(params or {}), world)
    ledger = Ledger(world.weight)
    for req in _requests(world, ledger):
        before = copy.copy(req)
        d1 = control.decide(req)
        assert isinstance(d1, Decision), f"{cls.__name__}.decide returned {type(d1).__name__}"
        assert isinstance(d1.allow, bool), "Decision.allow must be a bool"
        assert all(isinstance(r, str) for r in d1.reasons), "reasons must be strings"
        assert _same(before, req), f"{cls.__name__}.decide mutated the request"
        d2 = control.decide(req)
        assert d1 == d2, f"{cls.__name__}.decide is not deterministic: {d1} then {d2}"
        assert not (d1.errors and d1.allow), f"an evaluation error became an allow: {d1}"
    for stage in control.path():
        assert hasattr(stage, "latency") or hasattr(stage, "servers"), f"bad path stage {stage!r}"


def _same(a: Request, b: Request) -> bool:
    for f in dataclasses.fields(Request):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if x is y or x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)):
            continue
        return False
    return True
