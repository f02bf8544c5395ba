"""Shared fixtures: small scenarios built as dicts (inline controls, no files needed)."""

from __future__ import annotations

import copy

import pytest

from simharness.spec import ScenarioSpec

MINI = {
    "schema_version": 1,
    "name": "mini",
    "horizon": "2h",
    "replications": 2,
    "seed": 7,
    "resources": [
        {"name": "crm", "sensitivity": "confidential", "destination": "crm.saas.example"},
        {"name": "ledger", "sensitivity": "restricted", "destination": "db.corp.internal"},
        {"name": "wiki", "sensitivity": "internal", "destination": "wiki.corp.internal"},
        {"name": "outbound_mail", "sensitivity": "public", "destination": "smtp.example",
         "external": True},
        {"name": "paste_site", "sensitivity": "public", "destination": "paste.example",
         "external": True, "approved": False},
    ],
    "tools": [
        {"name": "crm_api", "actions": ["read", "write", "delete"], "resources": ["crm"]},
        {"name": "sql", "actions": ["read", "write", "delete", "admin"], "resources": ["ledger"]},
        {"name": "docs", "actions": ["read", "write"], "resources": ["wiki"]},
        {"name": "http", "actions": ["send"], "resources": ["outbound_mail", "paste_site"]},
    ],
    "agents": [
        {"name": "support", "count": 4,
         "role": {"crm_api": ["read", "write", "delete"], "docs": ["read", "write"],
                  "http": ["send"], "sql": ["read"]},
         "task_rate": "6/h", "tasks": {"answer_ticket": 4, "refund": 1}},
        {"name": "billing", "count": 2, "role": {"sql": ["read", "write", "delete", "admin"],
                                                 "crm_api": ["read"]},
         "task_rate": "2/h", "tasks": {"reconcile": 1}},
    ],
    "tasks": {
        "answer_ticket": {"steps": [
            {"tool": "crm_api", "action": "read", "resource": "crm"},
            {"tool": "docs", "action": "read", "resource": "wiki"},
            {"tool": "crm_api", "action": "write", "resource": "crm"}]},
        "refund": {"steps": [{"tool": "crm_api", "action": "read", "resource": "crm"},
                             {"delegate": "billing", "task": "issue_refund"}]},
        "issue_refund": {"steps": [{"tool": "sql", "action": "write", "resource": "ledger"}]},
        "reconcile": {"steps": [{"tool": "sql", "action": "read", "resource": "ledger"},
                                {"tool": "sql", "action": "write", "resource": "ledger"}]},
    },
    "misuse": {"rate": 0.0},
    "controls": [{"name": "none", "model": "none"}, {"name": "static_iam", "model": "static_iam"}],
}


def make_spec(**changes) -> ScenarioSpec:
    """The mini scenario with top-level fields replaced (dotted keys go one level deep)."""
    data = copy.deepcopy(MINI)
    for key, value in changes.items():
        if "__" in key:
            outer, inner = key.split("__", 1)
            data.setdefault(outer, {})[inner] = value
        else:
            data[key] = value
    return ScenarioSpec.model_validate(data)


def rich_spec(**changes) -> ScenarioSpec:
    """The mini scenario with more to aim at: a tool reaching two resources, a reply sent
    outside with a recipient argument, an amount on the refund."""
    data = copy.deepcopy(MINI)
    data["tools"][0]["resources"] = ["crm", "ledger"]
    data["tasks"]["answer_ticket"]["steps"].append(
        {"tool": "http", "action": "send", "resource": "outbound_mail", "bytes_out": 20000,
         "args": {"recipient": {"known": 0.9}}})
    data["tasks"]["issue_refund"]["steps"][0]["args"] = {
        "amount": {"dist": "lognormal", "p50": 80, "p99": 900}}
    data.update(changes)
    return ScenarioSpec.model_validate(data)


@pytest.fixture
def mini() -> ScenarioSpec:
    return make_spec()
