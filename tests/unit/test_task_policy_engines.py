"""A task's generated policy written as rules, Cedar and Rego decides as task_policy does."""

from __future__ import annotations

import importlib.util
from collections import Counter

import pytest

from simharness.actions import Action
from simharness.controls.base import TaskContext, World, make
from simharness.loader import load_scenario
from simharness.policy.engines import load_policy
from simharness.policy.generate import render_task_policy
from simharness.testing import request_for
from simharness.workload import build_workload

SUFFIX = {"rules": ".yaml", "cedar": ".cedar", "rego": ".rego"}
EXTRA = {"cedar": "cedarpy", "rego": "regopy"}


def _engines():
    for engine in ("rules", "cedar", "rego"):
        module = EXTRA.get(engine)
        missing = module is not None and importlib.util.find_spec(module) is None
        yield pytest.param(engine, marks=pytest.mark.skipif(
            missing, reason=f"needs the {engine} extra (pip install 'simharness[{engine}]')"))


@pytest.mark.parametrize("params", [{}, {"constrain_actions": ["send", "delete"]}])
@pytest.mark.parametrize("engine", list(_engines()))
def test_generated_policy_agrees_with_task_policy(engine, params, tmp_path):
    spec = load_scenario("in_plan_attacks").model_copy(update={"horizon": 2 * 3600.0})
    world = World(spec)
    control = make("tp", "task_policy", params, world)
    wl = build_workload(spec, 0)
    checked = denied = 0
    tampered_allowed: Counter = Counter()  # action -> changed-argument requests allowed
    with_args: set[str] = set()  # actions asked with arguments
    tasks = [t for t in wl.iter_tasks() if t.misuse_id >= 0][:12] + list(wl.iter_tasks())[:12]
    for task in tasks:
        agent = wl.agents[task.agent]
        identity = agent.name
        ctx = TaskContext(task, agent, identity, None, task.depth, True)
        control.on_task_start(ctx, None, 0.0)
        policy = control._policies[task.id]
        path = tmp_path / f"t{task.id}{SUFFIX[engine]}"
        path.write_text(render_task_policy(policy, engine))
        real = load_policy(engine, path, world.resources.values())
        perms = [s.perm for s in task.steps if isinstance(s, Action)]
        perms += sorted(world.roles[agent.archetype])[:6]  # some outside the task's scope
        steps = [s for s in task.steps if isinstance(s, Action)] + [
            Action(p, 0.0, 0.0, 0.1) for p in perms[len(perms) - 6:]]
        for step in steps:
            args = step.args
            values = dict(args.values) if args else {}
            # Each step as planned and with every argument changed to a value nobody declared.
            for asked in (values, {n: f"{n}:undeclared" for n in values}):
                req = request_for(world, step.perm, archetype=agent.archetype, identity=identity,
                                  task_id=task.id, in_scope=step.perm in task.declared,
                                  args=asked, args_unknown=args.unknown if args else frozenset())
                native = control.decide(req)
                assert real.evaluate(req).allow == native.allow, (engine, step.perm, asked, native)
                checked += 1
                denied += not native.allow
                if values and asked is not values:
                    with_args.add(step.perm[1])
                    tampered_allowed[step.perm[1]] += native.allow
        control.on_task_end(ctx, None, None, 1.0)
    assert checked > 50 and 0 < denied < checked
    # Changed arguments pass exactly on the calls whose arguments are not constrained.
    free = with_args - {"send", "delete"} if params else set()
    assert {a for a, n in tampered_allowed.items() if n} == free and (free or not params)


def test_rendering_an_unknown_engine_is_an_error():
    from simharness.controls.task_policy import TaskPolicy

    with pytest.raises(ValueError, match="unknown policy engine"):
        render_task_policy(TaskPolicy(1, frozenset(), {}, {}, frozenset()), "xacml")
