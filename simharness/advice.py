"""Warnings, not errors: a scenario that runs but probably not as meant, and results that say
less than they seem to. Each is one line a person can act on; the CLI prints them on stderr.

Before a run: a rate or duration without a unit (read as per second / seconds), agents whose
tasks arrive faster than one agent finishes them (a backlog that grows all run). After: a
misuse kind the scenario asks for that was never injected, a headline metric undefined (NaN)
for a control. Intervals on fewer than 5 replications are noted under the tables
(stats.few_replications_note).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from simharness.estimate import steps_per_task
from simharness.metric_catalogue import HEADLINE
from simharness.spec import ScenarioSpec

# A load above this (task arrivals x mean task time per agent) leaves the agent busier than
# it can be: tasks queue behind one another for the whole run.
BACKLOG_LOAD = 1.0


def _bare_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def unitless(raw: Mapping[str, Any]) -> list[str]:
    """Rates and durations written as bare numbers in a scenario file (read as per second and
    seconds: `task_rate: 2` is 7,200 tasks an hour)."""
    out = []
    for i, agent in enumerate(raw.get("agents") or []):
        if isinstance(agent, Mapping) and _bare_number(agent.get("task_rate")):
            r = agent["task_rate"]
            out.append(f"agents.{i}.task_rate: {r} has no unit and is read as {r}/s "
                       f"({r * 3600:g}/h); write '{r}/h' if you meant per hour")
    for key in ("horizon", "warmup"):
        v = raw.get(key)
        if _bare_number(v) and v:
            out.append(f"{key}: {v} has no unit and is read as {v} seconds; write '{v}h' or "
                       f"'{v}s' to say which")
    return out


def backlog(spec: ScenarioSpec) -> list[str]:
    """Archetypes whose agents get tasks faster than they finish them (one task at a time)."""
    steps = steps_per_task(spec)
    step_time = spec.timing.think.mean() + spec.timing.step.mean()
    out = []
    for agent in spec.agents:
        mix = {t: w for t, w in agent.tasks.items() if w > 0}
        if not mix or agent.task_rate <= 0:
            continue
        mean_steps = sum(w * steps.get(t, 0.0) for t, w in mix.items()) / sum(mix.values())
        load = agent.task_rate * mean_steps * step_time
        if load > BACKLOG_LOAD:
            out.append(
                f"agents {agent.name!r}: tasks arrive every {1 / agent.task_rate:.3g} s but take "
                f"about {mean_steps * step_time:.3g} s (load {load:.3g} > 1): a backlog grows "
                "all run and most tasks never start; lower task_rate or add agents")
    return out


def before_run(spec: ScenarioSpec, raw: Mapping[str, Any] | None) -> list[str]:
    """Every warning about a scenario before it runs."""
    return (unitless(raw) if raw is not None else []) + backlog(spec)


def after_run(spec: ScenarioSpec, aggregate: pd.DataFrame, misuse: pd.DataFrame) -> list[str]:
    """Every warning about a run's results."""
    out = []
    asked = [k for k, w in spec.misuse.kinds.items() if w > 0] if spec.misuse.rate > 0 else []
    if asked and "kind" in misuse.columns:
        injected = pd.to_numeric(misuse["injected"], errors="coerce").groupby(
            misuse["kind"].astype(str)).sum()
        for kind in asked:
            if injected.get(kind, 0) == 0:
                out.append(f"misuse kind {kind!r} was asked for (misuse.kinds) but injected 0 "
                           "times: its tasks or agents may be missing, or the run too short")
    if "control" in aggregate.columns:
        for metric in HEADLINE:
            col = f"{metric}_mean"
            if col not in aggregate.columns:
                continue
            values = pd.to_numeric(aggregate[col], errors="coerce")
            undefined = sorted({str(c) for c, v in zip(aggregate["control"], values,
                                                       strict=True) if math.isnan(v)})
            if metric == "misuse_caught_rate" and not asked:
                continue  # the scenario injects no misuse: nothing to catch, by design
            if undefined:
                why = (" (no misuse was injected)" if metric == "misuse_caught_rate"
                       else "")
                out.append(f"{metric} is undefined for {', '.join(undefined)}{why}")
    return out
