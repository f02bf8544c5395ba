"""The shipped permit rule is no longer a perfect classifier of the workload (issue 13): some
legitimate actions fail `attested and entitled and in_scope and task.active`, and some misuse
goal actions pass `in_scope`. Measured on every request of the baseline, and how both move with
recall and deviation."""

from __future__ import annotations

from simharness.controls.base import World, make
from simharness.engine import A, simulate
from simharness.loader import load_scenario
from simharness.workload import build_workload


def permit_shares(overrides=(), replications=2) -> tuple[float, float]:
    """(share of legitimate actions the permit rule admits, share of misuse goal actions in the
    declared scope), over every request of `replications` baseline runs under static_iam (a
    local check, so every action is one decide call, in log order)."""
    spec = load_scenario("baseline", overrides=[f"replications={replications}", *overrides])
    entry = spec.control("static_iam")
    legit = legit_ok = goal = goal_in = 0
    for rep in range(spec.replications):
        control = make(entry.name, entry.model, entry.params, World(spec))
        seen = []
        real = control.decide

        def record(req, real=real, seen=seen):
            seen.append(req.attested and req.entitled and req.in_scope and req.task_active)
            return real(req)

        control.decide = record  # type: ignore[method-assign]
        log = simulate(build_workload(spec, rep), control, probe=False)  # only the run's calls
        assert len(seen) == len(log.actions)
        for ok, row in zip(seen, log.actions, strict=True):
            if row[A["misuse_id"]] < 0:
                legit += 1
                legit_ok += ok
            elif row[A["goal"]]:
                goal += 1
                goal_in += row[A["in_scope"]]
    return legit_ok / legit, goal_in / goal


def test_the_permit_rule_misjudges_both_ways_and_moves_with_plan_knowledge():
    legit, goal = permit_shares()
    assert legit < 1 and goal > 0
    # Knowing the whole plan and agents that never deviate: every legitimate action passes.
    exact, _ = permit_shares(["declared_scope.recall=1", "declared_scope.extra=0",
                              "behaviour.deviation.extra=0", "behaviour.deviation.substitute=0"])
    assert exact == 1.0
    # Less of the plan known: more legitimate actions fail. More of the rest of the role
    # declared: more goal actions pass in_scope (a higher `extra` keeps a superset).
    worse, _ = permit_shares(["declared_scope.recall=0.8"])
    _, more_in = permit_shares(["declared_scope.extra=0.5"])
    assert worse < legit and more_in > goal
