"""Spans -> the canonical JSONL of tasks and tool calls that replay and calibrate read.

A *call* is a tool span: OpenTelemetry GenAI `execute_tool` (gen_ai.tool.name,
gen_ai.tool.call.arguments) or an OpenInference TOOL span (tool.name, input.value). A *task* is
the nearest agent span above it: GenAI `invoke_agent` (gen_ai.agent.name is the archetype,
gen_ai.agent.id the agent) or an OpenInference AGENT span (agent.name or graph.node.id); with no
agent span the trace is the task and the resource's service.name the agent. A task whose agent
span sits under another agent's span was delegated by that task.

The file: a header line `{"format": "simharness-calls", "version": 1, "t0": <epoch s>}`, then
one JSON object per line, `"record": "task"` or `"record": "call"`, times in seconds after t0.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from simharness.importers.tool_actions import infer_action, matched
from simharness.results import atomic_write_text
from simharness.traces.otlp import Span, TraceInputError

FORMAT = "simharness-calls"
VERSION = 1


@dataclass(slots=True)
class TaskRecord:
    task: str
    agent: str
    identity: str
    archetype: str
    start: float
    end: float
    parent_task: str | None = None  # the task that delegated this one
    name: str = ""  # the agent span's name


@dataclass(slots=True)
class Call:
    time: float
    end: float
    task: str
    agent: str
    identity: str
    archetype: str
    tool: str
    action: str
    resource: str
    arguments: dict[str, Any] = field(default_factory=dict)
    call_id: str = ""
    parent_call: str | None = None  # a tool span this one ran inside
    outcome: str = "ok"  # ok | error


@dataclass
class Calls:
    """A trace as tasks and calls (both in time order)."""

    t0: float
    tasks: list[TaskRecord]
    calls: list[Call]

    def by_task(self) -> dict[str, list[Call]]:
        out: dict[str, list[Call]] = {t.task: [] for t in self.tasks}
        for c in self.calls:
            out[c.task].append(c)
        return out

    def timelines(self) -> dict[str, list[Call | TaskRecord]]:
        """Per task, its calls and the sub-tasks it handed work to, in the order they began
        (a call before a hand-off at the same instant): the steps a replay or a fit walks."""
        items: dict[str, list[tuple[float, int, int, Call | TaskRecord]]] = {
            t.task: [] for t in self.tasks}
        for i, c in enumerate(self.calls):
            items[c.task].append((c.time, 0, i, c))
        for i, t in enumerate(self.tasks):
            if t.parent_task is not None:
                items[t.parent_task].append((t.start, 1, i, t))
        return {k: [x[3] for x in sorted(v, key=lambda x: x[:3])] for k, v in items.items()}


@dataclass
class Mapping:
    """Tool name -> (action, resource) overrides; the rest is inferred."""

    tools: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path | None) -> Mapping:
        if path is None:
            return cls()
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise TraceInputError([f"{path}: cannot read the mapping ({e})"]) from None
        tools = data.get("tools") if isinstance(data, dict) else None
        problems = []
        if not isinstance(tools, dict):
            problems.append(f"{path}: expected `tools: {{name: {{action: ..., resource: ...}}}}`")
            tools = {}
        for name, entry in tools.items():
            if not isinstance(entry, dict) or not set(entry) <= {"action", "resource"}:
                problems.append(f"{path}: tools.{name}: give `action` and/or `resource` only")
            elif not all(isinstance(v, str) and v for v in entry.values()):
                problems.append(f"{path}: tools.{name}: action and resource are names (text)")
        if problems:
            raise TraceInputError(problems)
        return cls({str(k): dict(v) for k, v in tools.items()})

    def resolve(self, tool: str) -> tuple[str, str, bool]:
        """(action, resource, whether anything but the default decided the action)."""
        entry = self.tools.get(tool, {})
        action = entry.get("action") or infer_action(tool)
        return action, entry.get("resource") or tool, "action" in entry or matched(tool)


def _is_agent(s: Span) -> bool:
    a = s.attributes
    return (a.get("gen_ai.operation.name") in ("invoke_agent", "create_agent")
            or a.get("openinference.span.kind") == "AGENT")


def _tool_name(s: Span) -> str | None:
    """The tool of a tool span ("" when the span is one but names no tool), else None."""
    a = s.attributes
    if a.get("gen_ai.operation.name") == "execute_tool":
        return str(a.get("gen_ai.tool.name") or "")
    if a.get("openinference.span.kind") == "TOOL":
        return str(a.get("tool.name") or s.name or "")
    return None


def _arguments(s: Span) -> dict[str, Any]:
    a = s.attributes
    raw = a.get("gen_ai.tool.call.arguments", a.get("input.value"))
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {"input": raw}  # OpenInference input.value may be plain text
    return value if isinstance(value, dict) else {"input": value}


def _agent_of(s: Span) -> tuple[str, str]:
    """(agent, archetype) of an agent span."""
    a = s.attributes
    archetype = (a.get("gen_ai.agent.name") or a.get("agent.name") or a.get("graph.node.id")
                 or s.name.removeprefix("invoke_agent ").strip() or "agent")
    return str(a.get("gen_ai.agent.id") or archetype), str(archetype)


def calls_from_spans(spans: Sequence[Span], mapping: Mapping | None = None
                     ) -> tuple[Calls, list[str]]:
    """The tasks and calls of `spans`, and notes for the user (inferred mappings). Raises
    TraceInputError on spans that cannot be placed (a tool span without a tool name, a
    duplicate span id)."""
    mapping = mapping or Mapping()
    by_id: dict[tuple[str, str], Span] = {}
    problems: list[str] = []
    for s in spans:
        key = (s.trace_id, s.span_id)
        if key in by_id:
            problems.append(f"{s.label()}: the span id appears twice in trace {s.trace_id}")
        by_id[key] = s
    if not spans:
        raise TraceInputError(["no spans in the input"])
    t0 = min(s.start for s in spans)

    def rel(ns: int) -> float:
        return (ns - t0) / 1e9

    def up(s: Span):
        seen = 0
        while s.parent_id is not None and seen < 10_000:
            s = by_id.get((s.trace_id, s.parent_id))  # type: ignore[assignment]
            if s is None:
                return
            seen += 1
            yield s

    tasks: dict[str, TaskRecord] = {}
    extent: dict[str, tuple[int, int]] = {}  # trace -> (first start, last end), one pass
    for x in spans:
        lo, hi = extent.get(x.trace_id, (x.start, x.end))
        extent[x.trace_id] = (min(lo, x.start), max(hi, x.end))

    def task_of(s: Span | None, trace_id: str, fallback: Span) -> TaskRecord:
        if s is None:  # no agent span: the trace is the task
            key = f"trace-{trace_id}"
            if key not in tasks:
                agent = str(fallback.resource.get("service.name") or "agent")
                start, end = extent[trace_id]
                tasks[key] = TaskRecord(key, agent, agent, agent, rel(start), rel(end), None, "")
            return tasks[key]
        if s.span_id not in tasks:
            agent, archetype = _agent_of(s)
            identity = str(s.attributes.get("simharness.identity") or agent)
            parent = next((p for p in up(s) if _is_agent(p)), None)
            parent_task = task_of(parent, s.trace_id, s).task if parent is not None else None
            tasks[s.span_id] = TaskRecord(s.span_id, agent, identity, archetype, rel(s.start),
                                          rel(s.end), parent_task, s.name)
        return tasks[s.span_id]

    calls: list[Call] = []
    defaulted: dict[str, int] = {}
    for s in spans:
        tool = _tool_name(s)
        if tool is None:
            continue
        if not tool:
            problems.append(f"{s.label()}: a tool span without gen_ai.tool.name / tool.name")
            continue
        ancestors = list(up(s))
        agent_span = next((p for p in ancestors if _is_agent(p)), None)
        task = task_of(agent_span, s.trace_id, s)
        parent_call = next((p.span_id for p in ancestors if _tool_name(p)), None)
        action, resource, decided = mapping.resolve(tool)
        if tool not in mapping.tools and s.attributes.get("simharness.action"):
            # written by `--otel`: the span says what it touched
            action = str(s.attributes["simharness.action"])
            resource = str(s.attributes.get("simharness.resource") or resource)
            decided = True
        if not decided:
            defaulted[tool] = defaulted.get(tool, 0) + 1
        calls.append(Call(rel(s.start), rel(s.end), task.task, task.agent, task.identity,
                          task.archetype, tool, action, resource, _arguments(s), s.span_id,
                          parent_call, "error" if s.error else "ok"))
    if problems:
        raise TraceInputError(problems)
    if not calls:
        raise TraceInputError(["no tool spans found: expected GenAI `execute_tool` spans "
                               "(gen_ai.operation.name) or OpenInference TOOL spans "
                               "(openinference.span.kind)"])
    calls.sort(key=lambda c: (c.time, c.end, c.call_id))
    used = {c.task for c in calls}
    # A task without calls of its own is kept when it delegated work that has calls.
    keep = set(used)
    for t in list(tasks.values()):
        p = t.parent_task
        if t.task in keep:
            while p is not None and p not in keep:
                keep.add(p)
                p = tasks[p].parent_task
    records = sorted((t for t in tasks.values() if t.task in keep), key=lambda t: (t.start, t.task))
    notes = [f"unmapped tool {name!r} ({n} calls): no mapping entry and no verb prefix, "
             "so its action is taken as `write` and its resource as its name; add it to a "
             "mapping file (--mapping) to say otherwise" for name, n in sorted(defaulted.items())]
    return Calls(t0 / 1e9, records, calls), notes


_TASK_KEYS = tuple(f.name for f in fields(TaskRecord))
_CALL_KEYS = tuple(f.name for f in fields(Call))


def write_calls(path: str | Path, calls: Calls) -> Path:
    """The canonical JSONL, written atomically (nothing partial on failure)."""
    lines = [json.dumps({"format": FORMAT, "version": VERSION, "t0": calls.t0})]
    # Field by field, not dataclasses.asdict: its deep copy was half the import time.
    lines += [json.dumps({"record": "task", **{k: getattr(t, k) for k in _TASK_KEYS}},
                         sort_keys=True) for t in calls.tasks]
    lines += [json.dumps({"record": "call", **{k: getattr(c, k) for k in _CALL_KEYS}},
                         sort_keys=True, default=str) for c in calls.calls]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return Path(path)




def read_calls(path: str | Path) -> Calls:
    """Read a calls file, checked: TraceInputError with file:line for every bad record."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise TraceInputError([f"{p}: cannot read ({e.__class__.__name__}: {e})"]) from None
    problems: list[str] = []
    try:
        head = json.loads(lines[0]) if lines else None
    except ValueError:
        head = None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise TraceInputError([f"{p}:1: not a calls file (the first line must be the header "
                               f'{{"format": "{FORMAT}", ...}} that `simharness import traces` '
                               "writes)"])
    if head.get("version") != VERSION:
        raise TraceInputError([f"{p}:1: version {head.get('version')!r}; this simharness reads "
                               f"version {VERSION}"])
    tasks: list[TaskRecord] = []
    calls: list[Call] = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            problems.append(f"{p}:{n}: not JSON ({e})")
            continue
        kind = rec.pop("record", None) if isinstance(rec, dict) else None
        keys = _TASK_KEYS if kind == "task" else _CALL_KEYS if kind == "call" else None
        if keys is None:
            problems.append(f'{p}:{n}: "record" must be "task" or "call"')
            continue
        missing = sorted(k for k in keys if k not in rec and k not in _OPTIONAL)
        extra = sorted(set(rec) - set(keys))
        if missing or extra:
            problems.append(f"{p}:{n}: " + "; ".join(
                ([f"missing {', '.join(missing)}"] if missing else [])
                + ([f"unknown {', '.join(extra)}"] if extra else [])))
            continue
        times = ("start", "end") if kind == "task" else ("time", "end")
        if not all(isinstance(rec[k], int | float) and math.isfinite(rec[k]) for k in times) \
                or rec[times[1]] < rec[times[0]]:
            problems.append(f"{p}:{n}: {times[0]} and {times[1]} must be numbers, "
                            f"{times[1]} >= {times[0]}")
            continue
        names = ("task", "agent", "identity", "archetype") + (
            ("tool", "action", "resource") if kind == "call" else ())
        if not all(isinstance(rec[k], str) and rec[k] for k in names):
            problems.append(f"{p}:{n}: {', '.join(names)} must be non-empty text")
            continue
        (tasks.append(TaskRecord(**rec)) if kind == "task" else calls.append(Call(**rec)))
    known = {t.task for t in tasks}
    problems += [f"{p}: call {c.call_id} names task {c.task!r}, which has no task record"
                 for c in calls if c.task not in known][:20]
    problems += [f"{p}: task {t.task} names parent task {t.parent_task!r}, which has no record"
                 for t in tasks if t.parent_task is not None and t.parent_task not in known][:20]
    if problems:
        raise TraceInputError(problems)
    return Calls(float(head.get("t0", 0.0)), tasks, calls)


_OPTIONAL = {"arguments", "call_id", "parent_call", "outcome", "parent_task", "name"}


def import_traces(paths: Iterable[str | os.PathLike[str]], out: str | Path,
                  mapping: str | Path | None = None) -> tuple[Calls, list[str]]:
    """`simharness import traces`: read, convert, write; (calls, notes)."""
    from simharness.traces.otlp import read_spans

    calls, notes = calls_from_spans(read_spans(list(paths)), Mapping.load(mapping))
    write_calls(out, calls)
    return calls, notes
