"""AgentDojo's task suites as scenarios (Debenedetti et al., NeurIPS 2024; docs/sources.md).

Per suite: a tool per AgentDojo function, with one action inferred from its name and the
environment fields it depends on (`Depends`) as resources; a field holding an injection vector
is `untrusted`; `agentdojo_mapping.yaml` overrides actions, sensitivities and flags. User tasks
become task types whose steps are their ground-truth calls. An argument whose value appears in
the task's prompt is declared (`known`); any other was found during the task:
`{known: 0, found_in: R}`, R the resource of the plan's last read before the call (`{known: 0}`
when nothing was read before). Arguments that are None or empty are left out. A call's resource
is the first field the tool depends on.

Injection tasks become task types too (their ground-truth calls, every argument the
attacker's: `{known: 0}`), and `misuse.cases` pairs every user task with every injection task,
as AgentDojo's security cases: the injection lands after the first ground-truth call whose
output shows an injection vector (run on an environment whose vectors hold canaries), via the
resource that call reads. Injection tasks without ground-truth calls are listed and left out.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass, field
from enum import Enum
from importlib import resources as pkg_resources
from pathlib import Path
from typing import Any

import yaml

from simharness.importers.tool_actions import infer_action

CANARY = "@@SIMHARNESS_CANARY_{}@@"
SUITES = ("workspace", "travel", "banking", "slack")
CONTROLS: list[Any] = [
    "none", "static_iam",
    {"name": "jit_tool", "model": "jit_per_task", "params": {"granularity": "tool"}},
    {"name": "jit_permission", "model": "jit_per_task", "params": {"granularity": "permission"}},
    "per_action_policy", "task_policy",
    # Progent's policies mostly restrict the arguments of calls with side effects:
    {"name": "task_policy_sinks", "model": "task_policy",
     "params": {"constrain_actions": ["write", "send", "delete"]}},
    "data_flow",
]


class MissingExtraError(RuntimeError):
    """The `agentdojo` extra is not installed."""


class ImportInputError(ValueError):
    """Bad input to the importer (unknown suite or version)."""


def require() -> Any:
    """The agentdojo package, or MissingExtraError with the install hint."""
    try:
        import agentdojo.task_suite.load_suites as load_suites
    except ImportError as e:
        raise MissingExtraError("the agentdojo importer needs the extra: "
                                "pip install 'simharness[agentdojo]'") from e
    return load_suites


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else json.dumps(value, default=str)


def declared(value: Any, prompt: str) -> bool:
    """A value the prompt states (every element of a list)."""
    if isinstance(value, list):
        return all(declared(v, prompt) for v in value)
    return _text(value) in prompt


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


@dataclass
class Imported:
    """One suite as a scenario (plain data) and what was inferred."""

    suite: str
    scenario: dict[str, Any]
    actions: dict[str, str]
    resources: dict[str, list[str]]
    untrusted: list[str]
    user_tasks: int
    injection_tasks: list[str]
    skipped: list[str] = field(default_factory=list)  # injection tasks without ground truth

    @property
    def cases(self) -> int:
        return self.user_tasks * len(self.injection_tasks)


def _mapping() -> dict[str, Any]:
    text = (pkg_resources.files("simharness.importers") / "agentdojo_mapping.yaml").read_text()
    return yaml.safe_load(text)


def _depends(tool: Any) -> list[str]:
    from agentdojo.functions_runtime import Depends

    hints = typing.get_type_hints(tool.run, include_extras=True)
    return [m.env_dependency for h in hints.values() for m in getattr(h, "__metadata__", ())
            if isinstance(m, Depends)]


def import_suite(name: str, suite: Any, version: str, mapping: dict[str, Any]) -> Imported:
    """One AgentDojo suite as a scenario."""
    from agentdojo.functions_runtime import FunctionsRuntime

    own = mapping.get("suites", {}).get(name, {})
    tool_over, res_over = own.get("tools", {}), own.get("resources", {})
    deps = {t.name: _depends(t) or ["environment"] for t in suite.tools}
    actions = {t: tool_over.get(t, {}).get("action", infer_action(t)) for t in deps}
    vectors = sorted(suite.get_injection_vector_defaults())
    canaries = {v: CANARY.format(v) for v in vectors}
    dump = suite.load_and_inject_default_environment(canaries).model_dump(mode="json")
    field_of = {v: f for f, data in dump.items() for v in vectors
                if canaries[v] in json.dumps(data)}
    fields = sorted({f for fs in deps.values() for f in fs} | set(field_of.values()))
    untrusted = sorted(set(field_of.values()))
    resources = []
    for f in fields:
        over = res_over.get(f, {})
        res: dict[str, Any] = {"name": f, "sensitivity": over.get(
            "sensitivity", mapping.get("default_sensitivity", "internal")),
            "destination": f"{f}.{name}.agentdojo"}
        if over.get("external"):
            res["external"] = True
        if over.get("untrusted", f in untrusted):
            res["untrusted"] = True
        resources.append(res)
    untrusted = [r["name"] for r in resources if r.get("untrusted")]
    env = suite.load_and_inject_default_environment({})
    runtime = FunctionsRuntime(suite.tools)

    def step(call: Any, prompt: str | None, last_read: str | None) -> dict[str, Any]:
        tool = call.function
        s: dict[str, Any] = {"tool": tool, "action": actions[tool], "resource": deps[tool][0]}
        args: dict[str, Any] = {}
        for arg, raw in call.args.items():
            value = _plain(raw)
            if _empty(value):
                continue
            if prompt is not None and declared(value, prompt):
                args[arg] = "known"
            elif prompt is None or last_read is None:
                args[arg] = {"known": 0}
            else:
                args[arg] = {"known": 0, "found_in": last_read}
        if args:
            s["args"] = args
        return s

    def plan(calls: list[Any], prompt: str | None) -> list[dict[str, Any]]:
        steps, last_read = [], None
        for call in calls:
            steps.append(step(call, prompt, last_read))
            if steps[-1]["action"] == "read":
                last_read = steps[-1]["resource"]
        return steps

    tasks: dict[str, Any] = {}
    injections, skipped = [], []
    for tid, task in suite.injection_tasks.items():
        calls = task.ground_truth(env.model_copy(deep=True))
        if not calls:
            skipped.append(tid)
            continue
        injections.append(tid)
        tasks[tid] = {"description": f"injection: {task.GOAL}", "steps": plan(calls, None)}
    cases = []
    user_tasks = []
    for tid, task in suite.user_tasks.items():
        calls = task.ground_truth(env.model_copy(deep=True))
        tasks[tid] = {"description": task.PROMPT, "steps": plan(calls, task.PROMPT)}
        user_tasks.append(tid)
        live = suite.load_and_inject_default_environment(canaries)
        for i, call in enumerate(calls):
            out, _ = runtime.run_function(live, call.function, dict(call.args))
            seen = sorted({field_of[v] for v in vectors if canaries[v] in str(out)})
            if seen:
                via = deps[call.function][0]
                cases.append({"task": tid, "after": i, "via": via if via in seen else seen[0],
                              "inject": list(injections)})
                break
    scenario = {
        "schema_version": 1,
        "name": f"agentdojo_{name}",
        "description": (f"AgentDojo {version} {name} suite (Debenedetti et al. 2024, MIT): "
                        "ground-truth plans of its user tasks; its injection tasks as scripted "
                        "cases (generated by `simharness import agentdojo`; do not edit)"),
        "answer": "bound",  # `simharness run` prints each control's bound on the cases
        "horizon": "8h",
        "replications": 3,
        "seed": 20241205,
        "resources": resources,
        "tools": [{"name": t, "actions": [actions[t]], "resources": deps[t]} for t in deps],
        "agents": [{"name": "user", "count": 4, "identity": "per_task", "task_rate": "6/h",
                    "role": {t: [actions[t]] for t in deps},
                    "tasks": {t: 1 for t in user_tasks}}],
        "tasks": tasks,
        # AgentDojo's ground truth is the plan: agents follow it, controls are told it.
        "behaviour": {"deviation": {"extra": 0.0, "substitute": 0.0},
                      "on_deny": {"retry": 0, "replan": 0.0}},
        "declared_scope": {"source": "plan"},
        "misuse": {"rate": 0.0, "cases": cases},
        "controls": CONTROLS,
    }
    return Imported(name, scenario, actions, deps, untrusted, len(user_tasks), injections,
                    skipped)


def load(names: list[str] | None, version: str) -> list[Imported]:
    """The named suites (all four when none) of an AgentDojo benchmark version."""
    load_suites = require()
    unknown = [n for n in names or [] if n not in SUITES]
    if unknown:
        raise ImportInputError(f"unknown suite {unknown[0]!r}; choose from {', '.join(SUITES)}")
    try:
        suites = load_suites.get_suites(version)
    except Exception as e:  # agentdojo raises a bare KeyError/ValueError for unknown versions
        raise ImportInputError(f"unknown AgentDojo benchmark version {version!r}") from e
    missing = [n for n in names or list(SUITES) if n not in suites]
    if missing:
        raise ImportInputError(f"AgentDojo version {version!r} has no suite {missing[0]!r}")
    mapping = _mapping()
    return [import_suite(n, suites[n], version, mapping) for n in (names or list(SUITES))]


def to_yaml(scenario: dict[str, Any]) -> str:
    """The scenario as YAML text (deterministic)."""
    head = ("# Question: what share of AgentDojo's injection cases can each control stop by\n"
            "# construction (simharness.injection_bound), and at what utility?\n"
            "# Generated by `simharness import agentdojo`; regenerate rather than edit.\n")
    return head + yaml.safe_dump(scenario, sort_keys=False, default_flow_style=None,
                                 width=100, allow_unicode=True)


def summary(imp: Imported) -> str:
    """What was inferred for one suite, as text lines."""
    lines = [f"{imp.suite}: {len(imp.actions)} tools, {imp.user_tasks} user tasks, "
             f"{len(imp.injection_tasks)} injection tasks, {imp.cases} injection cases"]
    for tool, action in imp.actions.items():
        lines.append(f"  tool {tool}: {action} on {', '.join(imp.resources[tool])}")
    lines.append(f"  untrusted resources: {', '.join(imp.untrusted) or '(none)'}")
    if imp.skipped:
        lines.append(f"  left out (no ground-truth calls): {', '.join(imp.skipped)}")
    return "\n".join(lines)


def write(names: list[str] | None, version: str, out: Path) -> list[tuple[Imported, Path]]:
    """Import suites and write `agentdojo_<suite>.yaml` files into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for imp in load(names, version):
        path = out / f"agentdojo_{imp.suite}.yaml"
        path.write_text(to_yaml(imp.scenario), encoding="utf-8")
        written.append((imp, path))
    return written
