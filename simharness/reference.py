"""Task times under `none`, computed from the workload instead of simulated.

Task inflation pairs every control with `none` on the same workload. Under `none` every
request is allowed at once (no decision path, no token service, nothing to revoke), so a task
takes exactly its sampled think and execution times, and tasks of different agents never
meet: the engine's run of `none` reduces to arithmetic on the workload. This module repeats
that arithmetic in the engine's order of float operations (a wake-up at now + delay; a step
sleeps its think time plus the previous action's execution; a delegated task runs inline), so
the times are bit-for-bit the engine's (tests/unit/test_reference.py checks every shipped
scenario). A sweep then needs no hidden `none` simulation (issue 20).

Agents that run several tasks at once share slots in the order events happen; that case is
left to the engine (`arithmetic_applies` is False).
"""

from __future__ import annotations

import numpy as np

from simharness.actions import Delegation, Task
from simharness.workload import Workload


def arithmetic_applies(workload: Workload) -> bool:
    """Whether `none_task_times` can stand in for a simulation: every agent works one task at
    a time (the engine's `_agent` process)."""
    return all(a.concurrency == 1 for a in workload.spec.agents)


def none_task_times(workload: Workload) -> np.ndarray:
    """metrics.task_times of the engine's run of `none` on this workload: start to end of each
    top-level task (workload order), NaN unless it completed before the horizon, carried no
    injected misuse and arrived after the warm-up."""
    horizon, warmup = workload.spec.horizon, workload.spec.warmup
    out = np.full(workload.n_top, np.nan)
    # Each agent's process runs its tasks in turn, in arrival order (sampled as they are read).
    for agent in workload.working_agents():
        now = 0.0
        for task in workload.agent_tasks(agent):
            if now < task.arrival:
                now = now + (task.arrival - now)  # the agent process sleeps until the arrival
            start = now
            end = _run(task, now, horizon)
            if end is None:  # still running (or not started) at the horizon: nothing more
                break
            now = end
            if task.misuse_id < 0 and task.arrival >= warmup:
                out[workload.top_index(task)] = end - start
    return out


def _run(task: Task, now: float, horizon: float) -> float | None:
    """When a task started at `now` ends (None: not before the horizon)."""
    if now >= horizon:  # the kernel runs only wake-ups before the horizon
        return None
    pending = 0.0
    for step in task.steps:
        now = now + (pending + step.think)
        if now >= horizon:
            return None
        pending = 0.0
        if isinstance(step, Delegation):
            end = _run(step.task, now, horizon)
            if end is None:
                return None
            now = end
            continue
        pending = step.duration  # allowed at once: zero latency, then the execution time
    if pending > 0:
        now = now + pending
        if now >= horizon:
            return None
    return now
