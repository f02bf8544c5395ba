"""Hand-built workloads for the mechanism tests: MINI with one agent per archetype, tasks and
actions written out with fixed times, so every expected figure is worked out from the plan."""

from __future__ import annotations

import copy

from simharness.actions import Action, Delegation, Task, intern_perm
from simharness.spec import ScenarioSpec
from simharness.workload import build_workload
from tests.conftest import MINI

SUPPORT, BILLING = 0, 1  # agent indexes in tiny_spec (support-0, billing-0)
CRM_READ = intern_perm("crm_api", "read", "crm")
CRM_WRITE = intern_perm("crm_api", "write", "crm")
DOCS_READ = intern_perm("docs", "read", "wiki")
SQL_READ = intern_perm("sql", "read", "ledger")
SQL_WRITE = intern_perm("sql", "write", "ledger")


def tiny_spec(**changes) -> ScenarioSpec:
    """MINI with one agent per archetype (support-0 per_agent, billing-0 per_task)."""
    data = copy.deepcopy(MINI)
    data["agents"][0]["count"] = 1
    data["agents"][1].update(count=1, identity="per_task")
    data.update(horizon="2h", replications=1)
    data.update(changes)
    return ScenarioSpec.model_validate(data)


def act(perm, think: float = 0.0, duration: float = 1.0, risk: float = 0.0) -> Action:
    return Action(perm, think, duration, risk)


def task(tid: int, agent: int, steps: list, arrival: float = 0.0, type_: str = "answer_ticket",
         depth: int = 0, **kw) -> Task:
    """A task of these steps; its scope and declared scope are its plan."""
    perms = frozenset(s.perm for s in steps if not isinstance(s, Delegation))
    return Task(tid, type_, agent, arrival, steps, perms, depth=depth, declared=perms, **kw)


def workload(spec: ScenarioSpec, tasks: list[Task]):
    """The spec's agents with exactly these tasks (no sampled ones, no misuse)."""
    wl = build_workload(spec, 0)
    wl.tasks = tasks
    wl.misuse = []
    return wl
