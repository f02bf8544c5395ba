"""Hypothesis properties on random small scenarios (derandomized: same cases every run)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simharness.actions import Delegation
from simharness.controls.base import World, make
from simharness.engine import COMPLETED, FAILED, IN_FLIGHT, A, T, simulate
from simharness.misuse_catalogue import MISUSE_KINDS
from simharness.workload import build_workload
from tests.conftest import make_spec

CONTROLS = [("none", "none", {}), ("static_iam", "static_iam", {}), ("jit", "jit_per_task", {}),
            ("pap", "per_action_policy", {})]


@st.composite
def scenarios(draw):
    kinds = draw(st.lists(st.sampled_from(MISUSE_KINDS), min_size=1, max_size=4, unique=True))
    depth = draw(st.integers(1, 3))
    chain = [{"tool": "crm_api", "action": "read", "resource": "crm"}]
    tasks = {f"hop{d}": {"steps": [*chain, {"delegate": "billing", "task": f"hop{d + 1}"}]}
             for d in range(depth)}
    tasks[f"hop{depth}"] = {"steps": [{"tool": "sql", "action": "write", "resource": "ledger"}]}
    support_tasks = {"answer_ticket": draw(st.integers(1, 4)), "hop0": draw(st.integers(0, 2)) or 0.5}
    return make_spec(
        horizon=f"{draw(st.integers(10, 60))}m",
        seed=draw(st.integers(0, 10_000)),
        max_delegation_depth=depth,
        tasks={**make_spec().model_dump()["tasks"], **tasks},
        agents=[
            {"name": "support", "count": draw(st.integers(1, 4)),
             "role": {"crm_api": ["read", "write", "delete"], "docs": ["read", "write"],
                      "http": ["send"], "sql": ["read"]},
             "identity": draw(st.sampled_from(["shared", "per_agent", "per_task"])),
             "platform": draw(st.sampled_from(["first_party", "third_party"])),
             "task_rate": f"{draw(st.integers(2, 30))}/h", "tasks": support_tasks},
            {"name": "billing", "count": draw(st.integers(1, 3)),
             "role": {"sql": ["read", "write", "delete", "admin"], "crm_api": ["read"]},
             "task_rate": "2/h", "tasks": {"reconcile": 1}},
        ],
        misuse={"rate": draw(st.floats(0, 1)), "kinds": {k: 1 for k in kinds}},
    )


@settings(max_examples=25, deadline=None, derandomize=True)
@given(spec=scenarios(), which=st.sampled_from(CONTROLS))
def test_run_invariants(spec, which):
    wl = build_workload(spec, 0)
    log = simulate(wl, make(which[0], which[1], which[2], World(spec)))
    top = [r for r in log.tasks if r[T["depth"]] == 0]
    started = len(top)
    arrived = len(wl.tasks)
    assert started <= arrived
    # An agent starts its tasks in the order the workload says they arrive (oracle: the
    # workload's own arrival lists, sampled before the engine ran): the started ones are a
    # prefix of each agent's arrivals, none starts before it arrives, and every one but the
    # last started ended.
    by_agent: dict[int, list] = {}
    for t in wl.tasks:
        by_agent.setdefault(t.agent, []).append(t)
    row = {r[T["task"]]: r for r in top}
    for tasks in by_agent.values():
        tasks.sort(key=lambda t: (t.arrival, t.id))
        begun = [t.id in row for t in tasks]
        assert begun == sorted(begun, reverse=True), "an agent skipped an earlier task"
        ids = [t.id for t in tasks if t.id in row]
        for t in (t for t in tasks if t.id in row):
            # (the kernel reaches an absolute time as now + delay: allow a rounding ulp)
            assert row[t.id][T["start"]] >= t.arrival - 1e-9 * max(1.0, t.arrival)
        for tid in ids[:-1]:  # concurrency 1: a later task began, so this one ended
            assert row[tid][T["status"]] in (COMPLETED, FAILED)
    for r in top:
        end = r[T["end"]]
        assert (r[T["status"]] == IN_FLIGHT) == (end is None or math.isnan(end) or end > spec.horizon)
    queued = [t for t in wl.tasks if t.id not in {r[T["task"]] for r in top}]
    assert all(t.arrival <= spec.horizon for t in queued)
    arrival = {t.id: t.arrival for t in wl.iter_tasks()}
    for rec in log.actions:
        assert rec[A["time"]] >= arrival[rec[A["task"]]]  # no action before its task
        assert rec[A["depth"]] <= spec.max_delegation_depth
        if rec[A["misuse_id"]] >= 0:
            assert rec[A["kind"]] in MISUSE_KINDS
    for t in wl.iter_tasks():
        for s in t.steps:
            if not isinstance(s, Delegation) and s.misuse_id >= 0:
                assert s.kind is not None
    # Each credential's weight is the summed weight of its permissions (the world's table).
    weight = World(spec).weight
    for c in log.ledger.credentials:
        assert c.weight == pytest.approx(sum(weight[p] for p in c.perms), abs=1e-9)
