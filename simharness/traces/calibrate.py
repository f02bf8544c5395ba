"""Calibrate: a scenario fitted to a trace (tasks and calls), so a workload like the recorded one
can be simulated at other scales, rates and controls.

What is fitted, and how:
- archetypes: one per agent name in the trace (gen_ai.agent.name), `count` the distinct agents,
  `role` every (tool, action) the archetype used, `task_rate` top-level tasks per agent over the
  trace's length, `concurrency` unlimited when one agent's tasks overlapped, else 1;
- tools and resources: those called, each resource `internal` (a trace has no sensitivity:
  edit them, or pass a scenario as `like` to take its resources, tools, weights, roles,
  identity modes and controls where the names match);
- task types: every distinct call sequence (with its hand-offs) is a plan, weighted by how often
  it ran. A trace cannot tell a planned call from a departure, so the plans include the agents'
  departures; what a control is told at task start is a *prediction* estimated from the trace
  (see _predicted_scope), never the realised plan;
- think time (gap before a call) and step time (a call's duration): exponential and lognormal
  fitted by moments, the one with the smaller Kolmogorov-Smirnov distance kept, the empirical
  distribution when neither comes within KS_EMPIRICAL.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from simharness.traces.calls import Calls, TaskRecord

#: above this KS distance neither parametric fit is used: the observed values are resampled
KS_EMPIRICAL = 0.05
EMPIRICAL_POINTS = 1000  # quantiles kept for an empirical distribution
Z99 = 2.3263478740408408  # standard normal 99th percentile


@dataclass
class Fit:
    name: str  # think | step
    n: int
    chosen: str
    ks: dict[str, float]  # family -> KS distance
    dist: Any  # the scenario's distribution value
    median: float


def _ks(sorted_x: np.ndarray, cdf: np.ndarray) -> float:
    n = len(sorted_x)
    hi = np.arange(1, n + 1) / n
    lo = np.arange(0, n) / n
    return float(max(np.max(hi - cdf), np.max(cdf - lo)))


def fit_duration(name: str, values: list[float]) -> Fit:
    """The best of exponential and lognormal by KS distance, else empirical."""
    x = np.sort(np.asarray(values, dtype=float))
    if len(x) == 0:
        return Fit(name, 0, "constant", {}, 0.0, 0.0)
    median = float(np.median(x))
    if x[-1] <= 0:
        return Fit(name, len(x), "constant", {}, 0.0, 0.0)
    ks: dict[str, float] = {}
    cands: dict[str, Any] = {}
    mean = float(x.mean())
    ks["exponential"] = _ks(x, 1.0 - np.exp(-x / mean))
    cands["exponential"] = {"dist": "exponential", "mean": _round(mean)}
    if x[0] > 0:
        logs = np.log(x)
        mu, sigma = float(logs.mean()), float(logs.std())
        if sigma > 0:
            z = (logs - mu) / (sigma * math.sqrt(2.0))
            cdf = 0.5 * (1.0 + np.vectorize(math.erf)(z))
            ks["lognormal"] = _ks(x, cdf)
            cands["lognormal"] = {"dist": "lognormal", "p50": _round(math.exp(mu)),
                                  "p99": _round(math.exp(mu + Z99 * sigma))}
    best = min(ks, key=lambda k: ks[k])
    if ks[best] > KS_EMPIRICAL:
        q = np.quantile(x, np.linspace(0, 1, min(EMPIRICAL_POINTS, len(x))))
        return Fit(name, len(x), "empirical", ks,
                   {"dist": "empirical", "samples": [_round(v) for v in q]}, median)
    return Fit(name, len(x), best, ks, cands[best], median)


def _round(v: float) -> float:
    return float(f"{v:.6g}")


def _rate(per_second: float) -> str:
    return f"{per_second * 3600:.6g}/h"


def calibrate(calls: Calls, name: str = "calibrated", like: Any = None
              ) -> tuple[dict[str, Any], list[Fit], list[str]]:
    """(scenario as plain data, the timing fits, notes). `like`: a ScenarioSpec whose tools,
    resources, weights, controls and (per archetype of the same name) role, identity and
    platform are taken."""
    by_task = calls.by_task()
    timelines = calls.timelines()
    thinks: list[float] = []
    steps_t: list[float] = []
    signature: dict[str, tuple] = {}
    ends: dict[str, float] = {}  # when a task's last step ended

    def walk(rec) -> tuple:
        cursor = rec.start
        sig: list[tuple] = []
        for item in timelines[rec.task]:
            if isinstance(item, TaskRecord):
                thinks.append(max(0.0, item.start - cursor))
                sig.append(("delegate", item.archetype, walk(item)))
                cursor = max(item.start, ends[item.task])
            else:
                thinks.append(max(0.0, item.time - cursor))
                steps_t.append(item.end - item.time)
                sig.append((item.tool, item.action, item.resource))
                cursor = max(item.time, item.end)
        signature[rec.task], ends[rec.task] = tuple(sig), cursor
        return signature[rec.task]

    tops = [t for t in calls.tasks if t.parent_task is None]
    for t in tops:
        walk(t)

    # Task types: one per distinct signature (archetype included), named by frequency.
    type_names: dict[tuple, str] = {}
    counts = Counter((t.archetype, signature[t.task]) for t in calls.tasks)
    per_arch: Counter = Counter()
    for (arch, sig), _ in counts.most_common():
        per_arch[arch] += 1
        type_names[(arch, sig)] = f"{arch}_{per_arch[arch]}"

    tasks: dict[str, Any] = {}
    for (_arch, sig), tname in type_names.items():
        steps = []
        for s in sig:
            if s[0] == "delegate":
                steps.append({"delegate": s[1], "task": type_names[(s[1], s[2])]})
            else:
                steps.append({"tool": s[0], "action": s[1], "resource": s[2]})
        tasks[tname] = {"steps": steps}

    # Archetypes.
    first = min(t.start for t in calls.tasks)
    last = max([c.end for c in calls.calls] + [t.end for t in calls.tasks])
    window = max(last - first, 1e-9)
    agents_of: dict[str, set[str]] = {}
    for t in calls.tasks:
        agents_of.setdefault(t.archetype, set()).add(t.agent)
    role: dict[str, dict[str, set[str]]] = {}
    for c in calls.calls:
        role.setdefault(c.archetype, {}).setdefault(c.tool, set()).add(c.action)
    mix: dict[str, Counter] = {}
    for t in tops:
        mix.setdefault(t.archetype, Counter())[type_names[(t.archetype, signature[t.task])]] += 1
    overlapping = _overlapping_agents(tops)
    like_agents = {a.name: a for a in like.agents} if like is not None else {}
    agents = []
    for arch in sorted(agents_of):
        n = len(agents_of[arch])
        entry: dict[str, Any] = {"name": arch, "count": n}
        base = like_agents.get(arch)
        r = {tool: sorted(acts) for tool, acts in sorted(role.get(arch, {}).items())}
        if base is not None:  # keep the scenario's role where it grants at least as much
            for tool, acts in base.role.items():
                r[tool] = sorted(set(r.get(tool, [])) | set(acts))
        entry["role"] = r
        if base is not None:
            entry["identity"] = base.identity
            entry["platform"] = base.platform
        tops_here = sum(mix.get(arch, Counter()).values())
        entry["task_rate"] = _rate(tops_here / (n * window))
        if arch in overlapping:
            entry["concurrency"] = "inf"
        if mix.get(arch):
            entry["tasks"] = dict(sorted(mix[arch].items(), key=lambda kv: (-kv[1], kv[0])))
        agents.append(entry)

    # Tools and resources.
    tools: dict[str, dict[str, set[str]]] = {}
    for c in calls.calls:
        entry_t = tools.setdefault(c.tool, {"actions": set(), "resources": set()})
        entry_t["actions"].add(c.action)
        entry_t["resources"].add(c.resource)
    like_res = {r.name: r for r in like.resources} if like is not None else {}
    if like is not None:  # the scenario's tools too: the roles taken from it name them
        for lt in like.tools:
            entry_t = tools.setdefault(lt.name, {"actions": set(), "resources": set()})
            entry_t["actions"] |= set(lt.actions)
            entry_t["resources"] |= set(lt.resources)
    resources = []
    for rname in sorted({r for t in tools.values() for r in t["resources"]}):
        if rname in like_res:
            resources.append(like_res[rname].model_dump(mode="json", exclude_defaults=True))
        else:
            resources.append({"name": rname, "sensitivity": "internal", "destination": rname})
    think_fit = fit_duration("think", thinks)
    step_fit = fit_duration("step", steps_t)
    actions_used = sorted({a for t in tools.values() for a in t["actions"]})
    if like is not None:
        weights: dict[str, Any] = like.weights.model_dump(mode="json")
    else:
        # the baseline's action weights; any other action (write, send, ...) weighs 2
        heavier_or_lighter = {"read": 1, "delete": 4, "admin": 8}
        weights = {"action": {a: heavier_or_lighter.get(a, 2) for a in actions_used}}
    scenario: dict[str, Any] = {
        "schema_version": 1,
        "name": name,
        "description": f"calibrated from a trace of {len(calls.calls)} tool calls in "
                       f"{len(tops)} tasks over {_round(window)} s",
        "horizon": f"{_round(window)}s",
        "replications": 5,
        "seed": 1,
        "weights": weights,
        "timing": {"think": think_fit.dist, "step": step_fit.dist},
        "resources": resources,
        "tools": [{"name": tn, "actions": sorted(t["actions"]), "resources": sorted(t["resources"])}
                  for tn, t in sorted(tools.items())],
        "agents": agents,
        "tasks": tasks,
        "declared_scope": _predicted_scope(tops, by_task, role, {
            tn: t["resources"] for tn, t in tools.items()}),
    }
    if like is not None:
        scenario["controls"] = [c.model_dump(mode="json", exclude_defaults=True)
                                for c in like.controls]
    notes = []
    if not like_res:
        notes.append("every resource is `internal` (a trace has no sensitivity); edit them or "
                     "pass --like SCENARIO")
    ds = scenario["declared_scope"]
    notes.append(f"{len(tasks)} task types from distinct call sequences; plans include whatever "
                 "departures the agents made")
    notes.append("declared scope: " + (
        f"predicted, recall {ds['recall']}, extra {ds['extra']} (what a predictor would declare that "
        "names the permissions most other tasks of the archetype with the same first call "
        "used)" if ds["source"] == "predicted" else
        "the whole role (too few similar tasks to estimate a prediction)"))
    return scenario, [think_fit, step_fit], notes


def _predicted_scope(tops, by_task, role, resources_of) -> dict[str, Any]:
    """What a control could be told when a task begins, estimated from the trace: for each
    top-level task, the permissions used by at least half of the *other* tasks of its archetype
    with the same first call (leave-one-out), against the permissions it then used. `recall`:
    the mean share of a task's permissions so predicted; `extra`: the mean share of the rest of
    its archetype's role predicted anyway. Fewer than MIN_SIMILAR similar tasks in every group:
    the whole role (no prediction to speak of)."""
    groups: dict[tuple, list[frozenset]] = {}
    for t in tops:
        calls = by_task[t.task]
        if not calls:
            continue
        first = (calls[0].tool, calls[0].action, calls[0].resource)
        perms = frozenset((c.tool, c.action, c.resource) for c in calls)
        groups.setdefault((t.archetype, first), []).append(perms)
    recalls, extras = [], []
    for (arch, _), members in groups.items():
        if len(members) < MIN_SIMILAR:
            continue
        granted = {(tool, a, r) for tool, acts in role[arch].items() for a in acts
                   for r in resources_of[tool]}  # the calibrated role, as permissions
        counts: Counter = Counter(p for m in members for p in m)
        n = len(members)
        for m in members:
            # leave this task out: a permission is predicted if at least half the others used it
            pred = {p for p, k in counts.items() if (k - (p in m)) * 2 >= n - 1}
            recalls.append(len(m & pred) / len(m))
            extras.append(len(pred - m) / max(len(granted - m), 1))
    if not recalls:
        return {"source": "role"}
    return {"source": "predicted", "recall": _round(float(np.mean(recalls))),
            "extra": _round(float(np.mean(extras)))}


#: similar tasks (same archetype and first call) needed to estimate a predicted scope
MIN_SIMILAR = 5


def _overlapping_agents(tops) -> set[str]:
    """Archetypes with an agent whose top-level tasks overlapped in time."""
    out = set()
    by_agent: dict[str, list] = {}
    for t in tops:
        by_agent.setdefault(t.agent, []).append(t)
    for ts in by_agent.values():
        ts.sort(key=lambda t: t.start)
        if any(b.start < a.end for a, b in zip(ts, ts[1:], strict=False)):
            out.add(ts[0].archetype)
    return out


def format_fits(fits: list[Fit]) -> str:
    lines = []
    for f in fits:
        ks = ", ".join(f"{k} KS {v:.3f}" for k, v in f.ks.items())
        lines.append(f"{f.name}: {f.n} values, median {f.median:.4g} s; {ks or 'no fit'}; "
                     f"using {f.chosen}")
    return "\n".join(lines)
