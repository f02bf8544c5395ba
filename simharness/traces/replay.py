"""Replay: a recorded trace as the workload, judged counterfactually under each control.

The trace fixes who did what and when: each task starts when its agent span started; each call
is an action whose think time is the gap since the end of the task's previous call (or
sub-task) and whose duration is the call's own; a sub-task is a delegation the delegator waits
for. The scenario supplies what a trace cannot: resources and their sensitivity, roles,
identity modes, controls, behaviour after a denial (on_deny) and the declared-scope rule.
Under `none` the replay reproduces the trace's calls and their times (within float rounding);
under a control, a denial changes what follows as the behaviour model says, and decision
latency pushes every later step of the task back.

Each agent works on its tasks as the trace shows, overlapping where they overlapped
(concurrency is unlimited). Calls of one task that overlapped in the trace (parallel tool calls)
are replayed one after another; `Replayed.overlaps` counts them. Task ends are the end of the
last call (the agent's final answer after it is not modelled).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simharness.actions import NO_ARGS, Action, AgentInfo, Args, Delegation, Task
from simharness.controls.base import World, make
from simharness.engine import A, RunLog, T, simulate
from simharness.spec import ScenarioSpec
from simharness.traces.calls import Calls, TaskRecord
from simharness.traces.export import delegation_parents
from simharness.traces.otlp import TraceInputError
from simharness.workload import Workload, WorkloadBuilder, permission_weights

#: how long after the trace's last call the replay runs on, as a share of the trace's length
#: (at least a minute): room for the delays a control adds, the same for every control
HORIZON_SLACK = 0.5


@dataclass
class Replayed:
    """A trace turned into a workload, with the map back from actions to calls."""

    workload: Workload
    ends: dict[int, float] = field(default_factory=dict)  # task id -> end, as the trace shows
    overlaps: int = 0


def replay_spec(spec: ScenarioSpec, calls: Calls, replications: int = 1) -> ScenarioSpec:
    """The scenario as a replay runs it: the trace's length plus slack as horizon, no warm-up,
    unlimited concurrency per agent, no misuse (a trace is what happened, not an attack)."""
    last = max([c.end for c in calls.calls] + [t.end for t in calls.tasks] + [1.0])
    horizon = last + max(60.0, HORIZON_SLACK * last)
    agents = [a.model_copy(update={"concurrency": math.inf}) for a in spec.agents]
    misuse = spec.misuse.model_copy(update={"rate": 0.0})
    return spec.model_copy(update={"horizon": horizon, "warmup": 0.0, "agents": agents,
                                   "misuse": misuse, "replications": replications})


def check_fits(spec: ScenarioSpec, calls: Calls) -> None:
    """Every archetype and (tool, action, resource) of the trace must exist in the scenario."""
    problems: list[str] = []
    names = [a.name for a in spec.agents]
    for arch in sorted({t.archetype for t in calls.tasks}):
        if arch not in names:
            near = difflib.get_close_matches(arch, names)
            problems.append(f"trace archetype {arch!r} is not an agent of scenario {spec.name}"
                            + (f" (did you mean {near[0]!r}?)" if near else "")
                            + "; add it to `agents`, or write the scenario with `simharness "
                            "calibrate`")
    perms = permission_weights(spec)
    missing = sorted({(c.tool, c.action, c.resource) for c in calls.calls} - set(perms))
    for tool, action, resource in missing[:10]:
        problems.append(f"trace call {tool}/{action} on {resource!r} is not a permission of "
                        f"scenario {spec.name}: add it to the tool's actions and resources, or "
                        "map the tool (`import traces --mapping`)")
    if len(missing) > 10:
        problems.append(f"... and {len(missing) - 10} more permissions missing")
    if problems:
        raise TraceInputError(problems)


def build(spec: ScenarioSpec, calls: Calls, replication: int = 0) -> Replayed:
    """The trace as the workload of `spec` (a replay spec: see replay_spec)."""
    check_fits(spec, calls)
    builder = WorkloadBuilder(spec, replication)
    archetypes = {a.name: a for a in spec.agents}
    agents: list[AgentInfo] = []
    index: dict[str, int] = {}
    by_archetype: dict[str, list[int]] = {a.name: [] for a in spec.agents}
    for t in calls.tasks:
        if t.agent not in index:
            a = archetypes[t.archetype]
            index[t.agent] = len(agents)
            by_archetype[a.name].append(len(agents))
            agents.append(AgentInfo(len(agents), t.agent, a.name, a.identity, a.platform,
                                    builder.role_of[a.name]))
    timelines = calls.timelines()
    risk = builder.benign_risk  # a trace has no risk scores: benign ones, drawn
    out = Replayed(None)  # type: ignore[arg-type]
    ids = {t.task: i for i, t in enumerate(calls.tasks)}

    def make_task(rec, depth: int) -> tuple[Task, float]:
        """The task and the time its last step ends as the engine replays it."""
        tid = ids[rec.task]
        steps: list = []
        cursor = rec.start
        for item in timelines[rec.task]:
            think = (item.start if isinstance(item, TaskRecord) else item.time) - cursor
            if think < 0:
                out.overlaps += 1
                think = 0.0
            if isinstance(item, TaskRecord):
                sub, sub_end = make_task(item, depth + 1)
                steps.append(Delegation(think, sub))
                cursor = max(cursor, sub_end)  # the sub-task began at cursor + think at the latest
                continue
            args = Args(item.arguments) if item.arguments else None
            steps.append(Action((item.tool, item.action, item.resource), think,
                                item.end - item.time, risk(), 0, args))
            cursor = cursor + think + (item.end - item.time)
        scope = frozenset(s.perm for s in steps if isinstance(s, Action))
        archetype = archetypes[rec.archetype].name
        ttype = rec.name or archetype
        task = Task(tid, ttype, index[rec.agent], rec.start, steps, scope, depth,
                    declared=builder.declare(archetype, scope),
                    declared_args=_declared_args(steps))
        out.ends[tid] = cursor
        return task, cursor

    top = []
    for rec in calls.tasks:
        if rec.parent_task is None:
            top.append(make_task(rec, 0)[0])
    top.sort(key=lambda t: (t.agent, t.arrival, t.id))
    out.workload = Workload(spec, replication, agents, by_archetype, top, [], builder.weight,
                            builder.sensitivity)
    return out


def _declared_args(steps: Sequence) -> Any:
    """Argument values the trace's calls used, as what the task declared (a trace does not say
    which values the user's request stated; a task policy sees these as declared)."""
    out: dict[str, set] = {}
    for s in steps:
        if isinstance(s, Action) and s.args is not None:
            for k, v in s.args.values.items():
                if isinstance(v, str | int | float | bool):
                    out.setdefault(k, set()).add(v)
    return {k: frozenset(v) for k, v in out.items()} if out else NO_ARGS


@dataclass
class ControlReplay:
    control: str
    log: RunLog
    row: dict[str, Any]
    parents: dict[int, int]  # sub-task -> delegating task (for the OTLP export)


def replay(spec: ScenarioSpec, calls: Calls, controls: Sequence[str] | None = None,
           replication: int = 0) -> list[ControlReplay]:
    """Each control of `spec` (or `controls`) on the trace: its run log and a summary row."""
    from simharness import metrics

    rspec = replay_spec(spec, calls)
    entries = [rspec.control(n) for n in controls] if controls else list(rspec.controls)
    out = []
    for entry in entries:
        built = build(rspec, calls, replication)  # afresh: a run consumes its workload
        control = make(entry.name, entry.model, entry.params, World(rspec))
        parents = delegation_parents(built.workload)
        log = simulate(built.workload, control, keep_plans=False)
        row = {"control": entry.name, **metrics.compute(log), **_changes(log, built.ends)}
        row["calls_overlapping"] = built.overlaps
        out.append(ControlReplay(entry.name, log, row, parents))
    return out


def _changes(log: RunLog, ends: dict[int, float]) -> dict[str, Any]:
    """What the control changed against the trace: traced calls denied, decision latency
    added, time added to each top-level task that completed."""
    acts = log.actions
    denied = sum(1 for a in acts if a[A["source"]] == "plan" and not a[A["allowed"]])
    latency = np.array([a[A["latency"]] for a in acts])
    added = [(r[T["end"]] - ends[r[T["task"]]]) for r in log.tasks
             if r[T["depth"]] == 0 and r[T["status"]] == "completed"]
    return {
        "decisions_changed": denied,
        "latency_added_s": float(latency.sum()),
        "latency_added_p50_ms": float(np.median(latency) * 1e3) if len(latency) else 0.0,
        "latency_added_p99_ms": float(np.quantile(latency, 0.99) * 1e3) if len(latency) else 0.0,
        "task_time_added_mean_s": float(np.mean(added)) if added else 0.0,
    }


#: what `simharness replay` prints per control (every metric goes to --out)
COLUMNS = (("control", "control", "{}"), ("actions", "actions", "{:d}"),
           ("decisions_changed", "denied*", "{:d}"), ("false_deny_rate", "false deny", "{:.1%}"),
           ("tasks_failed", "tasks failed", "{:d}"),
           ("latency_added_p50_ms", "p50 ms", "{:.2f}"), ("latency_added_p99_ms", "p99 ms", "{:.2f}"),
           ("task_time_added_mean_s", "task +s", "{:.3f}"), ("exposure", "exposure", "{:.4g}"))


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A plain table, one line per control, under 100 columns."""
    head = [h for _, h, _ in COLUMNS]
    body = [[f.format(r[k]) if isinstance(r.get(k), int | float | str) else "" for k, _, f in COLUMNS]
            for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in
                       enumerate(zip(row, widths, strict=True))) for row in [head, *body]]
    return "\n".join(lines) + ("\n* traced calls denied (each one succeeded in the trace); "
                              "p50/p99: decision latency per call; task +s: mean time added "
                              "to a completed task")
