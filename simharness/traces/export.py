"""A simulated run as OpenTelemetry spans (OTLP/JSON lines), so it opens in any tracing backend.

Per task an `invoke_agent` span (gen_ai.agent.name = archetype, gen_ai.agent.id = agent), per
action an `execute_tool` span under it (gen_ai.tool.name; simharness.action and
simharness.resource say what it touched, so `import traces` reads it back without a mapping)
and, under that, one `apply_guardrail` span per decided action with
gen_ai.security.decision.type (allow / deny) and gen_ai.security.policy.id (the control).

Timing: the tool span runs from the request to the end of the action (decision latency plus
execution); the guardrail span covers the decision latency. A delegated task's span is a child
of its delegator's and shares its trace. Ids are derived from the run (replication, task and
action indexes), so the same seed writes the same bytes. Times count from EPOCH_NS.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from simharness.actions import Delegation
from simharness.engine import A, RunLog, T
from simharness.results import atomic_path
from simharness.workload import Workload

#: simulated time 0 (2026-01-01T00:00:00Z): a fixed epoch keeps the output reproducible
EPOCH_NS = 1_767_225_600 * 1_000_000_000
TASKS_PER_LINE = 500  # one OTLP request (a JSON line) per this many top-level tasks
SPAN_KIND_INTERNAL = 1
STATUS_ERROR = 2


def delegation_parents(workload: Workload) -> dict[int, int]:
    """sub-task id -> delegating task id (read before the run: the engine may drop plans)."""
    return {s.task.id: t.id for t in workload.iter_tasks() for s in t.steps
            if isinstance(s, Delegation)}


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        v: dict[str, Any] = {"boolValue": value}
    elif isinstance(value, int):
        v = {"intValue": str(value)}
    elif isinstance(value, float):
        v = {"doubleValue": value}
    else:
        v = {"stringValue": str(value)}
    return {"key": key, "value": v}


def _ns(t: float) -> str:
    return str(EPOCH_NS + round(t * 1e9))


def _span(trace: str, span: str, parent: str | None, name: str, start: float, end: float,
          attrs: dict[str, Any], error: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"traceId": trace, "spanId": span}
    if parent is not None:
        out["parentSpanId"] = parent
    out.update(name=name, kind=SPAN_KIND_INTERNAL, startTimeUnixNano=_ns(start),
               endTimeUnixNano=_ns(end),
               attributes=[_attr(k, v) for k, v in attrs.items() if v is not None])
    if error is not None:
        out["status"] = {"code": STATUS_ERROR, "message": error}
    return out


def spans(log: RunLog, parents: dict[int, int], control: str, replication: int
          ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """(top-level task id, its spans and its sub-tasks') in task order."""
    agents = log.workload.agents
    horizon = log.horizon
    by_task: dict[int, list[int]] = {}
    for i, a in enumerate(log.actions):
        by_task.setdefault(a[A["task"]], []).append(i)
    records = {r[T["task"]]: r for r in log.tasks}

    def root(task: int) -> int:
        while task in parents:
            task = parents[task]
        return task

    def task_span(task: int) -> str:
        return f"1{task:015x}"

    groups: dict[int, list[dict[str, Any]]] = {}
    order: list[int] = []
    for task, r in records.items():
        top = root(task)
        if top not in groups:
            groups[top] = []
            order.append(top)
        agent = agents[r[T["agent"]]]
        end = r[T["end"]] if not math.isnan(r[T["end"]]) else horizon
        trace = f"{replication:08x}{top:024x}"  # a delegated task shares its root's trace
        groups[top].append(_span(
            trace, task_span(task), task_span(parents[task]) if task in parents else None,
            f"invoke_agent {agent.archetype}", r[T["start"]], end,
            {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent.archetype,
             "gen_ai.agent.id": agent.name, "simharness.identity": r[T["identity"]],
             "simharness.task.type": r[T["type"]], "simharness.task.status": r[T["status"]],
             "simharness.task.arrival_s": r[T["arrival"]]}))
        for i in by_task.get(task, []):
            a = log.actions[i]
            t, latency = a[A["time"]], a[A["latency"]]
            allowed = a[A["allowed"]]
            tool_span, decision_span = f"2{i:015x}", f"3{i:015x}"
            misuse = a[A["misuse_id"]] >= 0
            groups[top].append(_span(
                trace, tool_span, task_span(task), f"execute_tool {a[A['tool']]}", t,
                t + latency + a[A["duration"]],
                {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": a[A["tool"]],
                 "gen_ai.tool.call.id": f"r{replication}-a{i}",
                 "gen_ai.agent.name": a[A["archetype"]], "gen_ai.agent.id": agents[a[A["agent"]]].name,
                 "simharness.action": a[A["action"]], "simharness.resource": a[A["resource"]],
                 "simharness.identity": a[A["identity"]], "simharness.source": a[A["source"]],
                 "simharness.misuse.kind": a[A["kind"]] if misuse else None,
                 "error.type": None if allowed else "denied"},
                None if allowed else "denied: " + a[A["reasons"]]))
            groups[top].append(_span(
                trace, decision_span, tool_span, "apply_guardrail", t, t + latency,
                {"gen_ai.operation.name": "apply_guardrail",
                 "gen_ai.security.decision.type": "allow" if allowed else "deny",
                 "gen_ai.security.policy.id": control,
                 "simharness.decision.reasons": a[A["reasons"]],
                 "simharness.decision.latency_s": latency}))
    for top in order:
        yield top, groups[top]


def write_run(path: str | os.PathLike[str], log: RunLog, parents: dict[int, int],
              scenario: str, control: str, replication: int) -> Path:
    """The run's spans as OTLP/JSON lines (the Collector file exporter's layout), atomically."""
    resource = {"attributes": [_attr("service.name", "simharness"),
                               _attr("simharness.scenario", scenario),
                               _attr("simharness.control", control),
                               _attr("simharness.replication", replication)]}
    scope = {"name": "simharness", "version": "1"}
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        batch: list[dict[str, Any]] = []
        n = 0
        for _, group in spans(log, parents, control, replication):
            batch += group
            n += 1
            if n == TASKS_PER_LINE:
                f.write(_line(resource, scope, batch))
                batch, n = [], 0
        if batch:
            f.write(_line(resource, scope, batch))
    return Path(path)


def _line(resource: dict, scope: dict, batch: list[dict[str, Any]]) -> str:
    doc = {"resourceSpans": [{"resource": resource,
                              "scopeSpans": [{"scope": scope, "spans": batch}]}]}
    return json.dumps(doc, separators=(",", ":")) + "\n"


def run_path(folder: str | os.PathLike[str], control: str, replication: int, key: str) -> Path:
    """`<control>-r<replication>-<run key prefix>.otlp.jsonl` (the key tells sweep points apart)."""
    return Path(folder) / f"{control}-r{replication}-{key[:10]}.otlp.jsonl"
