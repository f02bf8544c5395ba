"""Hypothesis properties on random small scenarios (derandomized: same cases every run)."""

from __future__ import annotations

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
    done = sum(r[T["status"]] in (COMPLETED, FAILED) for r in top)
    in_flight = sum(r[T["status"]] == IN_FLIGHT for r in top)
    # arrived = completed + failed + in flight, where in flight is started-and-running or still
    # queued behind the agent's earlier tasks (arrived, not started).
    assert started == done + in_flight
    assert started <= arrived
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
    m = log.ledger.credentials
    assert all(c.weight >= 0 for c in m)
