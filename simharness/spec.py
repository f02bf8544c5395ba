"""Frozen pydantic models of a scenario (schema_version 1) and its control profiles."""

from __future__ import annotations

import difflib
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
)

from simharness.misuse_catalogue import MISUSE_KINDS
from simharness.units import Distribution, Duration, JsonForms, Rate, Servers

SUPPORTED_SCHEMA_VERSIONS = (1,)
DEFAULT_CONTROLS = ("none", "static_iam", "sse_only", "jit_per_task", "per_action_policy")

Name = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$")]


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Weights(Frozen):
    """w(permission) = sensitivity[r.sensitivity] * action[a]."""

    sensitivity: dict[str, Annotated[float, Field(ge=0)]] = Field(description=(
        "weight of each sensitivity level a resource may have"), default={
        "public": 0,
        "internal": 1,
        "confidential": 4,
        "restricted": 16,
    })
    action: dict[str, Annotated[float, Field(ge=0)]] = Field(description=(
        "weight of each action a tool may take"), default={
        "read": 1,
        "write": 2,
        "send": 2,
        "delete": 4,
        "admin": 8,
    })


class Resource(Frozen):
    """Something agents act on: a database, an API, a mailbox, a web site."""

    name: Name = Field(description="how tools and roles refer to it")
    sensitivity: str = Field(description="a level of weights.sensitivity (default levels: "
                             "public, internal, confidential, restricted)")
    destination: str = Field(description="the host a network control (sse_only) sees")
    external: bool = Field(default=False, description="outside the organisation (egress)")
    approved: bool = Field(default=True, description=(
        "an approved destination (an unapproved external one is what exfiltration targets)"))
    # service_account: legacy SaaS reachable only through one shared broad credential.
    auth: Literal["scoped", "service_account"] = Field(default="scoped", description=(
        "scoped: credentials can be narrowed to it; service_account: reachable only through "
        "one shared broad credential (legacy SaaS)"))
    untrusted: bool = Field(default=False, description=(
        "an outsider can write what agents read here (an inbox, tickets, web pages): values "
        "read from it are untrusted for data-flow controls"))


class Tool(Frozen):
    """A tool agents call: which actions it takes on which resources."""

    name: Name = Field(description="how roles and task steps refer to it")
    actions: list[str] = Field(min_length=1, description="actions of weights.action it can take")
    resources: list[str] = Field(min_length=1, description="resources it can act on")


class Deviation(Frozen):
    """Legitimate departures from the plan, per planned step (sampled with the workload, so
    identical for every control of a replication)."""

    extra: float = Field(default=0.0, ge=0, le=1, description=(
        "per planned step, the probability of an extra legitimate action before it, drawn from "
        "`explore`; a denial of it is a false denial"))
    substitute: float = Field(default=0.0, ge=0, le=1, description=(
        "per planned step, the probability that the agent does it with another permission of "
        "its role for the same action (another tool or resource)"))
    explore: Literal["role"] | dict[str, Annotated[float, Field(ge=0)]] = Field(
        default="role", description=(
            "where extras come from: the archetype's role permissions off the plan, weighted by "
            "action ({action: weight}); `role` means {read: 8, write: 1, send: 1}"))

    def explore_weights(self) -> dict[str, float]:
        return dict(EXPLORE_ROLE) if self.explore == "role" else dict(self.explore)


EXPLORE_ROLE = {"read": 8.0, "write": 1.0, "send": 1.0}


class OnDeny(Frozen):
    """What an agent does after a denial of legitimate work, before `on_deny` (abort | skip)."""

    retry: int = Field(default=0, ge=0, le=10, description="ask again this many times")
    backoff: Duration = Field(default=2.0, description="wait before each retry or replan "
                              "(duration: a number of seconds or e.g. '2s')")
    replan: float = Field(default=0.0, ge=0, le=1, description=(
        "after the retries, the probability of trying an alternative: another role permission "
        "for the same action, one the task declared if there is any"))


class Behaviour(Frozen):
    """How agents leave their plans and react to denials (the scenario's default; an agent
    archetype may override parts)."""

    deviation: Deviation = Deviation()
    on_deny: OnDeny = OnDeny()


class DeclaredScope(Frozen):
    """What controls are told of a task when it begins (never its realised plan).

    plan: the plan's permissions; role: the whole role; predicted: each planned permission kept
    with probability `recall`, each other role permission added with probability `extra`
    (recall and extra are read only when source is predicted)."""

    source: Literal["plan", "predicted", "role"] = Field(default="plan", description=(
        "plan: the plan's permissions; predicted: a noisy prediction (recall, extra); role: "
        "the archetype's whole role"))
    recall: float = Field(default=1.0, ge=0, le=1, description=(
        "predicted: probability that each planned permission is declared"))
    extra: float = Field(default=0.0, ge=0, le=1, description=(
        "predicted: probability that each other permission of the role is declared too"))


class Agent(Frozen):
    """An agent archetype: `count` agents with one role and task mix."""

    name: Name = Field(description="the archetype's name (agents are <name>-0, <name>-1, ...)")
    count: int = Field(default=1, ge=1, le=100_000, description="agents of this archetype")
    role: dict[str, list[str]] = Field(description=(
        "what a standing role grants: tool -> actions (static IAM hands all of it out)"))
    identity: Literal["shared", "per_agent", "per_task"] = Field(default="per_agent", description=(
        "workload identity: one for all agents of the archetype, one per agent, or one per task"))
    platform: Literal["first_party", "third_party"] = Field(default="first_party", description=(
        "third_party: an embedded agent the organisation does not run (no tool-level audit)"))
    task_rate: Rate = Field(description="tasks per agent per unit of time, e.g. '6/h'")
    concurrency: Servers = Field(default=1, description=(
        "tasks one agent works on at once (1: one after another, later arrivals wait; inf: "
        "each task starts when it arrives, an open arrival process)"))
    tasks: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict, description=(
        "task mix: task type -> relative weight"))
    behaviour: Behaviour | None = Field(default=None, description=(
        "overrides parts of the scenario's `behaviour` for this archetype; what is not given "
        "is inherited"))


class KnownArg(Frozen):
    """A value the task declares when it begins (`known`), or, with probability 1 - known,
    one the agent finds during the task (a tool output): controls see it as unknown."""

    known: float = Field(default=1.0, ge=0, le=1, description=(
        "probability that the value is one the task declared when it began"))
    found_in: str | None = Field(default=None, description=(
        "the resource whose read supplies the value when it is found during the task (not "
        "given: the plan's last read before the step)"))


class ChoiceArg(Frozen):
    """One of several values, by weight (declared with the task)."""

    choice: dict[str, Annotated[float, Field(ge=0)]] = Field(min_length=1)


class ConstantArg(Frozen):
    value: str | float | bool


def _arg_form(value: Any) -> Any:
    # `known` and bare scalars are shorthands; a mapping with `dist` is a numeric distribution.
    if value == "known":
        return {"known": 1.0}
    if isinstance(value, str | int | float | bool):
        return {"value": value}
    return value


def _arg_kind(value: Any) -> str:
    if isinstance(value, dict):
        return next((k for k in ("known", "choice", "value") if k in value), "dist")
    for cls, tag in ((KnownArg, "known"), (ChoiceArg, "choice"), (ConstantArg, "value")):
        if isinstance(value, cls):
            return tag
    return "dist"


ArgSpec = Annotated[
    Annotated[KnownArg, Tag("known")] | Annotated[ChoiceArg, Tag("choice")]
    | Annotated[ConstantArg, Tag("value")] | Annotated[Distribution, Tag("dist")],
    Discriminator(_arg_kind),
    BeforeValidator(_arg_form),
    JsonForms({"description": "`known`, or a constant (text, number or true/false)",
               "type": ["string", "number", "boolean"]}, extend=True),
]


class ToolStep(Frozen):
    """One tool call of a task's plan."""

    tool: str = Field(description="a tool of `tools`")
    action: str = Field(description="one of the tool's actions")
    resource: str = Field(description="one of the tool's resources")
    bytes_out: int = Field(default=0, ge=0, description="bytes the call sends out (egress)")
    args: dict[str, ArgSpec] = Field(default_factory=dict, description=(
        "argument values by name: `known` (declared by the task), {known: p}, a constant, "
        "{choice: {value: weight}} or a distribution (numbers, e.g. an amount); policies read "
        "args.<name> and args.<name>.known"))
    carries: list[str] = Field(default_factory=list, description=(
        "resources whose data the call passes on (a send's payload): what a data-flow control "
        "at value granularity sees it carry"))


class DelegateStep(Frozen):
    """A hand-off: an agent of another archetype does a sub-task."""

    delegate: str = Field(description="the archetype (agents.name) that does the sub-task")
    task: str = Field(description="the sub-task's type (a key of `tasks`)")


def _step_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "delegate" if "delegate" in value else "tool"
    return "delegate" if isinstance(value, DelegateStep) else "tool"


Step = Annotated[
    Annotated[ToolStep, Tag("tool")] | Annotated[DelegateStep, Tag("delegate")],
    Discriminator(_step_kind),
]


class TaskSpec(Frozen):
    """A task type: its plan, step by step."""

    description: str = ""
    steps: list[Step] = Field(min_length=1, description=(
        "tool calls ({tool, action, resource, ...}) and hand-offs ({delegate, task}), in order"))


class Timing(Frozen):
    """How long agents think before a step and how long a step runs (seconds)."""

    # validate_default: the factories return raw dicts that must become distribution models.
    think: Distribution = Field(  # type: ignore[assignment]
        default_factory=lambda: {"dist": "exponential", "mean": "2s"}, validate_default=True,
        description="time before each step (a distribution, or a bare duration)",
    )
    step: Distribution = Field(  # type: ignore[assignment]
        default_factory=lambda: {"dist": "lognormal", "p50": "300ms", "p99": "3s"},
        validate_default=True, description="time a step runs once allowed",
    )


class MisuseParams(Frozen):
    """Shape of injected misuse (defaults are illustrative; tune per scenario)."""

    hijack_actions: int = Field(default=3, ge=1)
    theft_delay: Duration = 300.0
    theft_uses: int = Field(default=5, ge=1)
    theft_interval: Duration = 60.0
    replay_delay: Duration = 600.0
    exfil_bytes: int = Field(default=50_000_000, ge=0)
    overload_calls: int = Field(default=50, ge=2)
    overload_interval: Duration = 0.05
    overload_setup: int = Field(default=5, ge=0)
    tamper_factor: float = Field(default=10.0, gt=0)  # argument_tampering: amount x this


class InjectionCases(Frozen):
    """Scripted injections into one task type: one case per injected task type, its steps run
    right after the output of step `after`, with argument values the attacker wrote into
    `via` (AgentDojo's security cases). Read by `simharness.injection_bound`; a run's random
    misuse ignores them."""

    task: str = Field(description="the task type the injections land in")
    after: int = Field(default=0, ge=0, description=(
        "index of the step whose output carries the injection"))
    via: str = Field(description="the resource that carries the injection (untrusted)")
    inject: list[str] = Field(min_length=1, description=(
        "task types whose steps the agent runs when it obeys the injection (one case each)"))


class Misuse(Frozen):
    rate: float = Field(default=0.0, ge=0, le=1)
    kinds: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: {k: 1.0 for k in MISUSE_KINDS}
    )
    params: MisuseParams = MisuseParams()
    cases: list[InjectionCases] = Field(default_factory=list, description=(
        "scripted injection cases for the structural bound (`simharness.injection_bound`)"))


class RiskSignal(Frozen):
    benign: Distribution = Field(  # type: ignore[assignment]
        default_factory=lambda: {"dist": "beta", "a": 2, "b": 8}, validate_default=True
    )
    misuse: Distribution = Field(  # type: ignore[assignment]
        default_factory=lambda: {"dist": "beta", "a": 6, "b": 2}, validate_default=True
    )


class Signals(Frozen):
    risk: RiskSignal = RiskSignal()


class ControlEntry(Frozen):
    """A named configuration of a control model (a profile)."""

    name: Name = Field(description="the control's name in results and --controls")
    model: str = Field(description="a control model: `simharness list controls`")
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict, description=(
        "the model's parameters (README, control models; checked by the model)"))


class BudgetQuestion(Frozen):
    """What `simharness run` sizes when a scenario's answer is a budget."""

    control: str = Field(description="the control whose parameter is sized")
    param: str = Field(description="dotted path inside its params, e.g. pdp.service_time.p99")
    slo: list[str] = Field(min_length=1, description=(
        "service levels that must hold, e.g. 'task_inflation<=0.05' (the first is searched)"))
    lo: str | float | None = Field(default=None, description="lower end of the search")
    hi: str | float | None = Field(default=None, description="upper end of the search")


class ScenarioSpec(Frozen):
    schema_version: int = Field(description="the scenario format's version: 1")
    name: Name = Field(description="the scenario's name (results folders, reports)")
    description: str = Field(default="", description=(
        "the question the scenario answers, in words (the report opens with it)"))
    horizon: Duration = Field(default=8 * 3600.0, description="simulated time of one run")
    warmup: Duration = Field(default=0.0, description=(
        "time at the start left out of the metrics (queues and credentials fill up)"))
    replications: int = Field(default=10, ge=1, le=100_000, description=(
        "independent runs per control (intervals are over replications)"))
    seed: int = Field(default=20261129, ge=0, description=(
        "root seed: same seed, same bytes; replication r of every control sees one workload"))
    # After a denied legitimate action (and any retry or replan): fail the task, or skip the step.
    on_deny: Literal["abort", "skip"] = Field(default="abort", description=(
        "after a denied legitimate step (and any retry or replan): fail the task, or skip it"))
    behaviour: Behaviour | None = Field(default=None, description=(
        "how agents leave their plans (deviation) and react to denials (on_deny); not given: "
        "they follow their plans exactly"))
    declared_scope: DeclaredScope | None = Field(default=None, description=(
        "what controls know of a task when it begins; not given: its plan"))
    max_delegation_depth: int = Field(default=4, ge=1, le=32, description=(
        "longest chain of hand-offs a task may start"))
    weights: Weights = Field(default=Weights(), description=(
        "permission weights: w(tool, action, resource) = sensitivity x action"))
    resources: list[Resource] = Field(min_length=1, description="what agents act on")
    tools: list[Tool] = Field(min_length=1, description="the tools agents call")
    agents: list[Agent] = Field(min_length=1, description="agent archetypes")
    tasks: dict[str, TaskSpec] = Field(min_length=1, description="task types by name")
    timing: Timing = Field(default=Timing(), description="think and step times")
    misuse: Misuse = Field(default=Misuse(), description=(
        "injected misuse: rate per task, kinds (`simharness list misuse`), their parameters"))
    signals: Signals = Field(default=Signals(), description=(
        "risk scores detectors and policies read (benign and misused actions)"))
    controls: list[ControlEntry] = Field(min_length=1, description=(
        "the controls compared: profile names or inline {name, model, params}"))
    sweep: dict[str, list[Any]] | None = Field(default=None, description=(
        "a parameter grid `simharness sweep` runs: dotted.path -> values"))
    engine: Literal["kernel", "simpy"] = Field(default="kernel", description=(
        "the event loop: the fast kernel, or simpy.Environment (the reference; identical "
        "results, slower)"))
    answer: Literal["controls", "sweep", "budget", "bound"] = Field(default="controls", description=(
        "what answers the scenario's question, and so what `simharness run` does: compare the "
        "controls; run the `sweep` grid; size the `budget`; or bound the scripted injection "
        "cases (misuse.cases)"))
    budget: BudgetQuestion | None = Field(default=None, description=(
        "the parameter `run` sizes when answer is budget"))

    @field_validator("schema_version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v not in SUPPORTED_SCHEMA_VERSIONS:
            raise ValueError(
                f"schema_version {v} is not supported; this simharness reads "
                f"{', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))}"
            )
        return v

    @field_validator("horizon")
    @classmethod
    def _finite_horizon(cls, v: float) -> float:
        if not (0 < v < math.inf):
            raise ValueError("horizon must be a finite duration > 0")
        return v

    # Convenience look-ups used everywhere downstream.
    def resource(self, name: str) -> Resource:
        return next(r for r in self.resources if r.name == name)

    def tool(self, name: str) -> Tool:
        return next(t for t in self.tools if t.name == name)

    def agent(self, name: str) -> Agent:
        return next(a for a in self.agents if a.name == name)

    def control(self, name: str) -> ControlEntry:
        return next(c for c in self.controls if c.name == name)

    @property
    def follows_plans(self) -> bool:
        """Neither `behaviour` nor `declared_scope` given: every legitimate action is planned
        and controls know the plan, so they cannot misjudge legitimate work."""
        return self.behaviour is None and self.declared_scope is None and not any(
            a.behaviour is not None for a in self.agents)

    def scope_rule(self) -> DeclaredScope:
        return self.declared_scope or DeclaredScope()

    def behaviour_of(self, archetype: str) -> Behaviour:
        """The scenario's behaviour with the archetype's overrides (only the fields it gives)."""
        base = self.behaviour or Behaviour()
        own = self.agent(archetype).behaviour
        if own is None:
            return base
        parts = {}
        for section in own.model_fields_set:
            given = getattr(own, section)
            parts[section] = getattr(base, section).model_copy(
                update={f: getattr(given, f) for f in given.model_fields_set})
        return base.model_copy(update=parts)


def did_you_mean(word: str, choices: list[str] | tuple[str, ...] | set[str]) -> str:
    """' (did you mean X?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(str(word), sorted(map(str, choices)), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown(kind: str, word: str, choices: Any) -> str:
    known = sorted(choices)
    hint = did_you_mean(word, known)
    if hint:
        return f"unknown {kind} {word!r}{hint}"
    return f"unknown {kind} {word!r}; known: {', '.join(known) or '(none)'}"


Problem = tuple[tuple[str | int, ...], str]


def check_references(spec: ScenarioSpec) -> list[Problem]:
    """Cross-field checks pydantic cannot do alone; every problem, as (path, message)."""
    problems: list[Problem] = []
    add = problems.append
    sens, acts = spec.weights.sensitivity, spec.weights.action

    for field, items in (("resources", spec.resources), ("tools", spec.tools), ("agents", spec.agents),
                         ("controls", spec.controls)):
        seen: set[str] = set()
        named: list[Any] = list(items)
        for i, item in enumerate(named):
            if item.name in seen:
                add(((field, i, "name"), f"duplicate name {item.name!r}"))
            seen.add(item.name)

    resources = {r.name: r for r in spec.resources}
    tools = {t.name: t for t in spec.tools}
    agents = {a.name: a for a in spec.agents}

    for i, r in enumerate(spec.resources):
        if r.sensitivity not in sens:
            add((("resources", i, "sensitivity"),
                 _unknown("sensitivity level", r.sensitivity, sens) + " (add it to weights.sensitivity)"))
    for i, t in enumerate(spec.tools):
        for j, a in enumerate(t.actions):
            if a not in acts:
                add((("tools", i, "actions", j),
                     _unknown("action", a, acts) + " (add it to weights.action)"))
        for j, rn in enumerate(t.resources):
            if rn not in resources:
                add((("tools", i, "resources", j), _unknown("resource", rn, resources)))
    for i, ag in enumerate(spec.agents):
        for tn, actions in ag.role.items():
            if tn not in tools:
                add((("agents", i, "role", tn), _unknown("tool", tn, tools)))
                continue
            for j, a in enumerate(actions):
                if a not in tools[tn].actions:
                    add((("agents", i, "role", tn, j),
                         _unknown(f"action of tool {tn!r}", a, tools[tn].actions)))
        for tn in ag.tasks:
            if tn not in spec.tasks:
                add((("agents", i, "tasks", tn), _unknown("task", tn, spec.tasks)))
    for tname, task in spec.tasks.items():
        for j, step in enumerate(task.steps):
            path: tuple[str | int, ...] = ("tasks", tname, "steps", j)
            if isinstance(step, DelegateStep):
                if step.delegate not in agents:
                    add(((*path, "delegate"), _unknown("agent archetype", step.delegate, agents)))
                if step.task not in spec.tasks:
                    add(((*path, "task"), _unknown("task", step.task, spec.tasks)))
                continue
            if step.tool not in tools:
                add(((*path, "tool"), _unknown("tool", step.tool, tools)))
                continue
            tool = tools[step.tool]
            if step.action not in tool.actions:
                add(((*path, "action"), _unknown(f"action of tool {tool.name!r}", step.action, tool.actions)))
            if step.resource not in tool.resources:
                add(((*path, "resource"),
                     _unknown(f"resource of tool {tool.name!r}", step.resource, tool.resources)))
            for k, rn in enumerate(step.carries):
                if rn not in resources:
                    add(((*path, "carries", k), _unknown("resource", rn, resources)))
            for name, arg in step.args.items():
                found = getattr(arg, "found_in", None)
                if found is not None and found not in resources:
                    add(((*path, "args", name, "found_in"), _unknown("resource", found, resources)))
    if not problems:
        problems += _check_delegation_depth(spec)
    for kind in spec.misuse.kinds:
        if kind not in MISUSE_KINDS:
            add((("misuse", "kinds", kind), _unknown("misuse kind", kind, MISUSE_KINDS)))
    problems += _check_cases(spec, resources)
    if spec.misuse.rate > 0 and not any(w > 0 for w in spec.misuse.kinds.values()):
        add((("misuse", "kinds"), "misuse.rate > 0 needs at least one kind with weight > 0"))
    problems += _check_behaviour(spec, acts)
    if spec.warmup >= spec.horizon:
        add((("warmup",), "warmup must be shorter than horizon"))
    if not any(ag.tasks for ag in spec.agents):
        add((("agents",), "no agent has tasks: give at least one agent a `tasks:` mix"))
    needs = {"sweep": (spec.sweep, "a `sweep:` grid"), "budget": (spec.budget, "a `budget:` block"),
             "bound": (spec.misuse.cases, "misuse.cases")}
    if spec.answer in needs and not needs[spec.answer][0]:
        add((("answer",), f"answer {spec.answer} needs {needs[spec.answer][1]}"))
    if spec.budget is not None and spec.budget.control not in {c.name for c in spec.controls}:
        add((("budget", "control"), _unknown("control", spec.budget.control,
                                             [c.name for c in spec.controls])))
    return problems


def _check_cases(spec: ScenarioSpec, resources: dict[str, Resource]) -> list[Problem]:
    """Scripted injection cases name task types with tool steps, a step and a resource."""
    problems: list[Problem] = []
    for i, case in enumerate(spec.misuse.cases):
        path: tuple[str | int, ...] = ("misuse", "cases", i)
        task = spec.tasks.get(case.task)
        if task is None:
            problems.append(((*path, "task"), _unknown("task", case.task, spec.tasks)))
        elif case.after >= len(task.steps):
            problems.append(((*path, "after"), f"task {case.task!r} has {len(task.steps)} "
                             f"step(s); after must be below that"))
        if case.via not in resources:
            problems.append(((*path, "via"), _unknown("resource", case.via, resources)))
        for j, name in enumerate(case.inject):
            injected = spec.tasks.get(name)
            if injected is None:
                problems.append(((*path, "inject", j), _unknown("task", name, spec.tasks)))
            elif any(isinstance(s, DelegateStep) for s in injected.steps):
                problems.append(((*path, "inject", j), f"task {name!r} delegates; injected "
                                 "steps must be tool calls"))
    return problems


ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_behaviour(spec: ScenarioSpec, actions: dict[str, float]) -> list[Problem]:
    """Behaviour, declared scope and argument names refer to things that exist."""
    problems: list[Problem] = []
    blocks: list[tuple[tuple[str | int, ...], Behaviour]] = []
    if spec.behaviour is not None:
        blocks.append((("behaviour",), spec.behaviour))
    blocks += [(("agents", i, "behaviour"), a.behaviour) for i, a in enumerate(spec.agents)
               if a.behaviour is not None]
    for path, b in blocks:
        if isinstance(b.deviation.explore, dict):
            for act in b.deviation.explore:
                if act not in actions:
                    problems.append(((*path, "deviation", "explore", act),
                                     _unknown("action", act, actions)))
    for tname, task in spec.tasks.items():
        for j, step in enumerate(task.steps):
            for name in getattr(step, "args", {}):
                if not ARG_NAME.match(name):
                    problems.append((("tasks", tname, "steps", j, "args", name),
                                     "an argument name is letters, digits and _ (it is read as "
                                     "args.<name> in policies)"))
    return problems


def _check_delegation_depth(spec: ScenarioSpec) -> list[Problem]:
    """Delegation must form no cycle and nest at most max_delegation_depth deep."""
    depth: dict[str, int] = {}
    problems: list[Problem] = []

    def visit(name: str, stack: tuple[str, ...]) -> int:
        if name in stack:
            cycle = " -> ".join((*stack[stack.index(name):], name))
            problems.append((("tasks", name), f"delegation cycle {cycle}"))
            return 0
        if name in depth:
            return depth[name]
        d = 0
        for step in spec.tasks[name].steps:
            if isinstance(step, DelegateStep):
                d = max(d, 1 + visit(step.task, (*stack, name)))
        depth[name] = d
        return d

    for name in spec.tasks:
        if visit(name, ()) > spec.max_delegation_depth and not problems:
            problems.append((("tasks", name),
                             f"delegation nests {depth[name]} deep; max_delegation_depth is "
                             f"{spec.max_delegation_depth}"))
    return problems
