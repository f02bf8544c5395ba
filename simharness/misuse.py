"""Misuse injection: rewrites a task's step stream for one misuse kind (DESIGN.md section 3).

Each injected action is labelled with `misuse_id` and `kind` and marked setup or goal. Nothing
here knows about controls: whether a control stops an injected action is decided later by that
control's own logic on the request attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from simharness.actions import (
    IMPERSONATE,
    NO_ARGS,
    PASSTHROUGH,
    REPLAY,
    STOLEN,
    AgentInfo,
    Args,
    Delegation,
    InjectedAction,
    Perm,
    Task,
    intern_perm,
    planned_steps,
)
from simharness.spec import ScenarioSpec

ATTACKER_VALUE = "attacker"  # what a tampered text argument is set to


class Builder(Protocol):
    """What an injector needs from the workload builder (workload.WorkloadBuilder)."""

    spec: ScenarioSpec
    agents: list[AgentInfo]
    by_archetype: dict[str, list[int]]
    role_of: dict[str, frozenset[Perm]]
    sensitivity: dict[str, str]
    sens_weight: dict[str, float]

    def injected(self, perm: Perm, **labels: Any) -> InjectedAction: ...


@dataclass(slots=True)
class Injection:
    """One misuse instance being injected: the task, its ids and its pre-drawn uniforms."""

    b: Builder
    task: Task
    mid: int
    kind: str
    u: float  # where in the task (injection point)
    u_pick: float  # which candidate (deterministic pick from a sorted list)

    def label(self, perm: Perm, goal: bool, **kw) -> InjectedAction:
        """A freshly sampled injected action, labelled with this instance's id and kind."""
        return self.b.injected(perm, misuse_id=self.mid, kind=self.kind, goal=goal, **kw)

    def pick_index(self, n: int) -> int:
        return min(int(self.u_pick * n), n - 1)

    def pick(self, items: list):
        return items[self.pick_index(len(items))]

    def point(self, items: list):
        """The injection point among `items`."""
        return items[min(int(self.u * len(items)), len(items) - 1)]

    def role(self) -> list[Perm]:
        return sorted(self.b.role_of[self.b.agents[self.task.agent].archetype])

    def sens(self, resource: str) -> float:
        return self.b.sens_weight[self.b.sensitivity[resource]]


Injector = Callable[[Injection], bool]
INJECTORS: dict[str, Injector] = {}


def injector(kind: str) -> Callable[[Injector], Injector]:
    """Register the injector of one misuse kind."""

    def wrap(fn: Injector) -> Injector:
        INJECTORS[kind] = fn
        return fn

    return wrap


def inject(b: Builder, task: Task, kind: str, mid: int, u_point: float, u_pick: float) -> bool:
    """Inject `kind` into `task`; False (task unchanged) when the task offers no place for it."""
    ok = INJECTORS[kind](Injection(b, task, mid, kind, u_point, u_pick))
    if ok:
        task.misuse_id, task.kind = mid, kind
    return ok


def _tool_steps(task: Task) -> list[int]:
    # Injection points are planned steps: deviations must not move where misuse lands.
    return planned_steps(task)


def _first_delegation(task: Task) -> Delegation | None:
    return next((s for s in task.steps if isinstance(s, Delegation)), None)


@injector("out_of_scope_resource")
def _out_of_scope(m: Injection) -> bool:
    b, task = m.b, m.task
    steps = _tool_steps(task)
    if not steps:
        return False
    i = m.point(steps)
    tool, action, res = task.steps[i].perm
    # Only resources the tool can reach: a permission outside the tool model would be denied
    # by any role check and count as "caught" for free.
    tool_res = next(t.resources for t in b.spec.tools if t.name == tool)
    others = sorted(r for r in tool_res if r != res and m.sens(r) >= m.sens(res))
    if not others:
        return False
    task.steps.insert(i + 1, m.label(intern_perm(tool, action, m.pick(others)), True))
    return True


@injector("unneeded_capability")
def _unneeded(m: Injection) -> bool:
    task, u = m.task, m.u
    used = {(p[0], p[1]) for p in task.scope}
    cands = [p for p in m.role() if (p[0], p[1]) not in used]
    if not cands:
        return False
    i = int(u * (len(task.steps) + 1))
    task.steps.insert(i, m.label(m.pick(cands), True))
    return True


@injector("exfiltration")
def _exfiltration(m: Injection) -> bool:
    b, task, u = m.b, m.task, m.u
    reads = [p for p in m.role() if p[1] == "read"]
    sends = sorted(
        intern_perm(t.name, "send", r.name)
        for t in b.spec.tools if "send" in t.actions
        for r in b.spec.resources if r.name in t.resources and r.external and not r.approved
    )
    if not reads or not sends:
        return False
    top = max(m.sens(p[2]) for p in reads)
    read = min(p for p in reads if m.sens(p[2]) == top)
    data = b.sensitivity[read[2]]
    i = int(u * (len(task.steps) + 1))
    send = m.label(m.pick(sends), True,
                   bytes_out=b.spec.misuse.params.exfil_bytes, data_sensitivity=data)
    task.steps[i:i] = [m.label(read, False), send]
    return True


@injector("goal_hijack")
def _goal_hijack(m: Injection) -> bool:
    b, task, u = m.b, m.task, m.u
    off_plan = [p for p in m.role() if p not in task.scope]
    if not off_plan:
        return False
    i = int(u * len(task.steps))
    n = b.spec.misuse.params.hijack_actions
    # Successive picks walk the off-plan list from the task's pre-drawn position.
    start = m.pick_index(len(off_plan))
    hijacked = [m.label(off_plan[(start + k) % len(off_plan)], True)
                for k in range(n)]
    task.steps[i:i] = hijacked
    return True


@injector("destructive_action")
def _destructive(m: Injection) -> bool:
    b, task, u = m.b, m.task, m.u
    planned = {p[2] for p in task.scope}
    cands = sorted(intern_perm(t.name, a, r) for t in b.spec.tools for a in t.actions if a in ("delete", "admin")
                   for r in t.resources if r in planned)
    if not cands:
        return False
    i = int(u * (len(task.steps) + 1))
    task.steps.insert(i, m.label(m.pick(cands), True))
    return True


@injector("credential_theft")
def _credential_theft(m: Injection) -> bool:
    b, task = m.b, m.task
    steps = _tool_steps(task)
    role = m.role()
    if not steps or not role:
        return False
    task.leak_step = m.point(steps)
    prm = b.spec.misuse.params
    start = m.pick_index(len(role))
    uses = []
    for k in range(prm.theft_uses):
        a = m.label(role[(start + k) % len(role)], True, present=STOLEN)
        a.think = prm.theft_delay + k * prm.theft_interval  # offset from the leak
        uses.append(a)
    task.attacker = tuple(uses)
    return True


@injector("token_replay")
def _token_replay(m: Injection) -> bool:
    b, task, u = m.b, m.task, m.u
    planned = sorted(task.scope)
    if not planned:
        return False
    prm = b.spec.misuse.params
    uses = []
    for k in range(min(3, len(planned))):
        a = m.label(planned[(int(u * len(planned)) + k) % len(planned)], True,
                    present=REPLAY)
        a.think = prm.replay_delay + k * prm.theft_interval  # offset from the task's end
        uses.append(a)
    task.replay = tuple(uses)
    return True


@injector("token_passthrough")
def _token_passthrough(m: Injection) -> bool:
    task, u = m.task, m.u
    d = _first_delegation(task)
    if d is None:
        return False
    plan_tools = {p[0] for p in task.scope}
    role = m.role()
    cands = [p for p in role if p[0] not in plan_tools] or [p for p in role if p not in task.scope]
    if not cands:
        return False
    i = int(u * (len(d.task.steps) + 1))
    d.task.steps.insert(i, m.label(m.pick(cands), True, present=PASSTHROUGH))
    return True


@injector("confused_deputy")
def _confused_deputy(m: Injection) -> bool:
    b, task, u = m.b, m.task, m.u
    d = _first_delegation(task)
    if d is None:
        return False
    origin = b.role_of[b.agents[task.agent].archetype]
    deputy = b.role_of[b.agents[d.task.agent].archetype]
    # Off the sub-task's plan first: an extra planned-looking call is indistinguishable from work.
    cands = sorted(deputy - origin - d.task.scope) or sorted(deputy - origin)
    if not cands:
        return False
    i = int(u * (len(d.task.steps) + 1))
    d.task.steps.insert(i, m.label(m.pick(cands), True))
    return True


@injector("unscoped_delegation")
def _unscoped_delegation(m: Injection) -> bool:
    task, u = m.task, m.u
    d = _first_delegation(task)
    if d is None:
        return False
    cands = sorted(task.scope - d.task.scope) or sorted(set(m.role()) - d.task.scope)
    if not cands:
        return False
    i = int(u * (len(d.task.steps) + 1))
    d.task.steps.insert(i, m.label(m.pick(cands), True))
    return True


@injector("impersonation")
def _impersonation(m: Injection) -> bool:
    b, task, u = m.b, m.task, m.u
    own = b.agents[task.agent].archetype
    others = sorted(a for a in b.by_archetype if a != own and b.by_archetype[a])
    if not others:
        return False
    victim = m.point(others)
    own_role = b.role_of[own]
    cands = sorted(b.role_of[victim] - own_role) or sorted(b.role_of[victim])
    if not cands:
        return False
    as_agent = b.by_archetype[victim][0]
    i = int(u * (len(task.steps) + 1))
    task.steps.insert(i, m.label(m.pick(cands), True,
                                present=IMPERSONATE, as_agent=as_agent))
    return True


@injector("stale_authorization")
def _stale_authorization(m: Injection) -> bool:
    task = m.task
    steps = _tool_steps(task)
    if not steps:
        return False
    i = m.point(steps)
    # The directory removes the permission after step i; the agent uses it once more.
    task.steps.insert(i + 1, m.label(task.steps[i].perm, True,
                                    entitled=False))
    return True


@injector("resource_overload")
def _resource_overload(m: Injection) -> bool:
    b, task = m.b, m.task
    steps = _tool_steps(task)
    if not steps:
        return False
    i = m.point(steps)
    perm = task.steps[i].perm
    prm = b.spec.misuse.params
    burst = []
    for k in range(prm.overload_calls):
        # The first calls look like ordinary use; the excess beyond them is the overload.
        a = m.label(perm, k >= prm.overload_setup)
        a.think = prm.overload_interval
        burst.append(a)
    task.steps[i + 1:i + 1] = burst
    return True


def _tamper(args: Args, name: str, factor: float, vector: str | None) -> Args:
    """The step's arguments with `name` set to an attacker's value (unknown to the task), read
    from `vector`: the tool output that carried the injection."""
    value = args.values[name]
    bad = value * factor if isinstance(value, float) else ATTACKER_VALUE
    derived = args.derived | {vector} if vector is not None else args.derived
    return Args({**args.values, name: bad}, args.unknown | {name}, derived, args.carries)


def _vector(m: Injection, i: int) -> str | None:
    """The injection's way in, read before step i: an attacker can write only to untrusted
    resources, so the task's last untrusted read, else its last read (a source trusted but
    compromised), else None (nothing read before: the instruction came with the task)."""
    untrusted = {r.name for r in m.b.spec.resources if r.untrusted}
    reads = [s.perm[2] for s in m.task.steps[:i]
             if not isinstance(s, Delegation) and s.perm[1] == "read"]
    return next((r for r in reversed(reads) if r in untrusted), reads[-1] if reads else None)


def _replace_step(m: Injection, i: int, **labels: Any) -> None:
    """Run planned step i as an injected goal action with the step's own timing and risk
    signal: the same call as planned, only its arguments or data differ."""
    old = m.task.steps[i]
    new = m.label(old.perm, True, **labels)
    new.think, new.duration, new.risk = old.think, old.duration, old.risk
    m.task.steps[i] = new


@injector("argument_tampering")
def _argument_tampering(m: Injection) -> bool:
    task = m.task
    steps = [i for i in _tool_steps(task) if task.steps[i].args is not None]
    if not steps:
        return False
    i = m.point(steps)
    old = task.steps[i]
    name = m.pick(sorted(old.args.values))
    _replace_step(m, i, bytes_out=old.bytes_out,
                  args=_tamper(old.args, name, m.b.spec.misuse.params.tamper_factor,
                               _vector(m, i)))
    return True


@injector("in_plan_exfiltration")
def _in_plan_exfiltration(m: Injection) -> bool:
    b, task = m.b, m.task
    planned = _tool_steps(task)
    resources = {r.name: r for r in b.spec.resources}
    # A planned send to an approved external destination, after the task read something.
    sends = [i for i in planned if task.steps[i].perm[1] == "send"
             and resources[task.steps[i].perm[2]].external
             and resources[task.steps[i].perm[2]].approved
             and any(task.steps[j].perm[1] == "read" for j in planned if j < i)]
    if not sends:
        return False
    i = m.point(sends)
    old = task.steps[i]
    reads = [task.steps[j].perm[2] for j in planned if j < i and task.steps[j].perm[1] == "read"]
    data = max(reads, key=lambda r: (m.sens(r), r))
    # The payload is what was read: the call carries the most sensitive resource of the task.
    args = Args(NO_ARGS, carries=frozenset([data])) if old.args is None else Args(
        old.args.values, old.args.unknown, old.args.derived, old.args.carries | {data})
    # Addressed to the attacker where the call names a recipient.
    target = next((n for n in ("recipient", "destination", "to") if n in args.values), None)
    if target is not None:
        args = _tamper(args, target, 1.0, _vector(m, i))
    _replace_step(m, i, bytes_out=old.bytes_out, args=args,
                  data_sensitivity=b.sensitivity[data])
    return True
