"""The work of one run, estimated before running it, so that a typo in a horizon or a count
is refused in a second instead of exhausting memory after minutes (the action log of a run is
held in memory, about 1 kB per action at peak with --audit)."""

from __future__ import annotations

import math
from typing import Any

from simharness.spec import DelegateStep, ScenarioSpec

#: default cap on the estimated actions of one run (`--max-actions` raises it)
DEFAULT_MAX_ACTIONS = 2_000_000

# Actions one misused task adds, by kind: the bursts read their size from misuse.params; the
# other kinds inject a few actions (a setup and a goal).
_BURSTS = {"credential_theft": ("theft_uses",), "goal_hijack": ("hijack_actions",),
           "resource_overload": ("overload_calls", "overload_setup")}
_FEW = 2.0


def steps_per_task(spec: ScenarioSpec) -> dict[str, float]:
    """Tool actions of each task type, counting those of the sub-tasks it delegates to."""
    memo: dict[str, float] = {}

    def count(name: str, active: frozenset[str]) -> float:
        if name in memo:
            return memo[name]
        if name in active or name not in spec.tasks:  # a cycle is reported by validation
            return 0.0
        total = 0.0
        for step in spec.tasks[name].steps:
            total += count(step.task, active | {name}) if isinstance(step, DelegateStep) else 1.0
        memo[name] = total
        return total

    return {name: count(name, frozenset()) for name in spec.tasks}


def _misuse_actions(spec: ScenarioSpec) -> float:
    """Expected injected actions per task."""
    misuse = spec.misuse
    kinds = {k: w for k, w in misuse.kinds.items() if w > 0}
    if misuse.rate <= 0 or not kinds:
        return 0.0
    params = misuse.params
    size = {k: sum(float(getattr(params, f, 0) or 0) for f in _BURSTS.get(k, ())) or _FEW
            for k in kinds}
    return misuse.rate * sum(w * size[k] for k, w in kinds.items()) / sum(kinds.values())


def _extra(spec: ScenarioSpec, archetype: str) -> float:
    """P(an extra action per planned step); read defensively: older specs have no behaviour."""
    behaviour_of = getattr(spec, "behaviour_of", None)
    behaviour: Any = behaviour_of(archetype) if callable(behaviour_of) else getattr(
        spec, "behaviour", None)
    deviation = getattr(behaviour, "deviation", None)
    return float(getattr(deviation, "extra", 0.0) or 0.0)


def actions_per_run(spec: ScenarioSpec) -> float:
    """Expected actions of one run: agents x task rate x horizon x actions per task (delegated
    sub-tasks, extra actions from deviations and misuse bursts included). May be inf."""
    steps = steps_per_task(spec)
    misuse = _misuse_actions(spec)
    total = 0.0
    for agent in spec.agents:
        mix = {t: w for t, w in agent.tasks.items() if t in steps}
        if not mix:
            continue
        per_task = sum(w * steps[t] for t, w in mix.items()) / sum(mix.values())
        per_task = per_task * (1.0 + _extra(spec, agent.name)) + misuse
        total += agent.count * agent.task_rate * spec.horizon * per_task
    return total if not math.isnan(total) else math.inf


def work_problem(spec: ScenarioSpec, max_actions: float = DEFAULT_MAX_ACTIONS) -> str | None:
    """Why `spec` is too much work for one run (a message for the user), or None."""
    estimate = actions_per_run(spec)
    if estimate <= max_actions:
        return None
    shown = "more than 1e300" if math.isinf(estimate) else f"about {estimate:,.0f}"
    return (f"one run would simulate {shown} actions (agents x task rate x horizon x actions "
            f"per task, with delegation, deviations and misuse bursts), above the cap of "
            f"{max_actions:,.0f}: shorten horizon, lower counts or rates, or raise the cap with "
            "--max-actions N")
