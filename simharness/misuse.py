"""Misuse injection: rewrites a task's step stream for one misuse kind (DESIGN.md section 3).

Each injected action is labelled with `misuse_id` and `kind` and marked setup or goal. Nothing
here knows about controls: whether a control stops an injected action is decided later by that
control's own logic on the request attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from simharness.workload import (
    IMPERSONATE,
    PASSTHROUGH,
    REPLAY,
    STOLEN,
    Action,
    Delegation,
    Perm,
    Task,
)

if TYPE_CHECKING:
    from simharness.workload import WorkloadBuilder

Injector = Callable[["WorkloadBuilder", Task, int, float], bool]
INJECTORS: dict[str, Injector] = {}


def injector(kind: str) -> Callable[[Injector], Injector]:
    """Register the injector of one misuse kind."""

    def wrap(fn: Injector) -> Injector:
        INJECTORS[kind] = fn
        return fn

    return wrap


def inject(b: WorkloadBuilder, task: Task, kind: str, mid: int, u_point: float, u_pick: float) -> bool:
    """Inject `kind` into `task`; False (task unchanged) when the task offers no place for it."""
    b._misuse_u = u_pick  # type: ignore[attr-defined]
    ok = INJECTORS[kind](b, task, mid, u_point)
    if ok:
        task.misuse_id, task.kind = mid, kind
    return ok


def _pick(b: WorkloadBuilder, items: list):
    """A deterministic pick from a (sorted) list with the task's pre-drawn uniform."""
    return items[min(int(b._misuse_u * len(items)), len(items) - 1)]  # type: ignore[attr-defined]


def _tool_steps(task: Task) -> list[int]:
    return [i for i, s in enumerate(task.steps) if isinstance(s, Action)]


def _point(items: list, u: float):
    return items[min(int(u * len(items)), len(items) - 1)]


def _label(b: WorkloadBuilder, perm: Perm, mid: int, kind: str, goal: bool, **kw) -> Action:
    return b.action(perm, misuse=True, misuse_id=mid, kind=kind, goal=goal, **kw)


def _role(b: WorkloadBuilder, task: Task) -> list[Perm]:
    return sorted(b.role_of[b.agents[task.agent].archetype])


def _sens(b: WorkloadBuilder, resource: str) -> float:
    return b.sens_weight[b.sensitivity[resource]]


@injector("out_of_scope_resource")
def _out_of_scope(b: WorkloadBuilder, task: Task, mid: int, u: float) -> bool:
    steps = _tool_steps(task)
    if not steps:
        return False
    i = _point(steps, u)
    tool, action, res = task.steps[i].perm
    tool_res = next(t.resources for t in b.spec.tools if t.name == tool)
    others = sorted(r for r in tool_res if r != res and _sens(b, r) >= _sens(b, res))
    if not others:  # the tool reaches nothing else: aim at any resource at least as sensitive
        others = sorted(r for r in b.sensitivity if r != res and _sens(b, r) >= _sens(b, res))
    if not others:
        return False
    task.steps.insert(i + 1, _label(b, (tool, action, _pick(b, others)), mid, "out_of_scope_resource", True))
    return True


@injector("unneeded_capability")
def _unneeded(b: WorkloadBuilder, task: Task, mid: int, u: float) -> bool:
    used = {(p[0], p[1]) for p in task.scope}
    cands = [p for p in _role(b, task) if (p[0], p[1]) not in used]
    if not cands:
        return False
    i = int(u * (len(task.steps) + 1))
    task.steps.insert(i, _label(b, _pick(b, cands), mid, "unneeded_capability", True))
    return True


@injector("exfiltration")
def _exfiltration(b: WorkloadBuilder, task: Task, mid: int, u: float) -> bool:
    reads = [p for p in _role(b, task) if p[1] == "read"]
    sends = sorted(
        (t.name, "send", r.name)
        for t in b.spec.tools if "send" in t.actions
        for r in b.spec.resources if r.name in t.resources and r.external and not r.approved
    )
    if not reads or not sends:
        return False
    top = max(_sens(b, p[2]) for p in reads)
    read = min(p for p in reads if _sens(b, p[2]) == top)
    data = b.sensitivity[read[2]]
    i = int(u * (len(task.steps) + 1))
    send = _label(b, _pick(b, sends), mid, "exfiltration", True,
                  bytes_out=b.spec.misuse.params.exfil_bytes, data_sensitivity=data)
    task.steps[i:i] = [_label(b, read, mid, "exfiltration", False), send]
    return True


@injector("goal_hijack")
def _goal_hijack(b: WorkloadBuilder, task: Task, mid: int, u: float) -> bool:
    off_plan = [p for p in _role(b, task) if p not in task.scope]
    if not off_plan:
        return False
    i = int(u * len(task.steps))
    n = b.spec.misuse.params.hijack_actions
    # Successive picks walk the off-plan list from the task's pre-drawn position.
    start = int(b._misuse_u * len(off_plan))  # type: ignore[attr-defined]
    hijacked = [_label(b, off_plan[(start + k) % len(off_plan)], mid, "goal_hijack", True)
                for k in range(n)]
    task.steps[i:i] = hijacked
    return True


@injector("destructive_action")
def _destructive(b: WorkloadBuilder, task: Task, mid: int, u: float) -> bool:
    planned = {p[2] for p in task.scope}
    cands = sorted((t.name, a, r) for t in b.spec.tools for a in t.actions if a in ("delete", "admin")
                   for r in t.resources if r in planned)
    if not cands:
        return False
    i = int(u * (len(task.steps) + 1))
    task.steps.insert(i, _label(b, _pick(b, cands), mid, "destructive_action", True))
    return True


@injector("credential_theft")
def _credential_theft(b: WorkloadBuilder, task: Task, mid: int, u: float) -> bool:
    steps = _tool_steps(task)
    role = _role(b, task)
    if not steps or not role:
        return False
    task.leak_step = _point(steps, u)
    prm = b.spec.misuse.params
    start = int(b._misuse_u * len(role))  # type: ignore[attr-defined]
    for k in range(prm.theft_uses):
        a = _label(b, role[(start + k) % len(role)], mid, "credential_theft", True, present=STOLEN)
        a.think = prm.theft_delay + k * prm.theft_interval  # offset from the leak
        task.attacker.append(a)
    return True


@injector("token_replay")
def _token_replay(b: WorkloadBuilder, task: Task, mid: int, u: float) -> bool:
    planned = sorted(task.scope)
    if not planned:
        return False
    prm = b.spec.misuse.params
    for k in range(min(3, len(planned))):
        a = _label(b, planned[(int(u * len(planned)) + k) % len(planned)], mid, "token_replay", True,
                   present=REPLAY)
        a.think = prm.replay_delay + k * prm.theft_interval  # offset from the task's end
        task.replay.append(a)
    return True


def _first_delegation(task: Task) -> Delegation | None:
    return next((s for s in task.steps if isinstance(s, Delegation)), None)


@injector("token_passthrough")
def _token_passthrough(b: WorkloadBuilder, task: Task, mid: int, u: float) -> bool:
    d = _first_delegation(task)
    if d is None:
        return False
    plan_tools = {p[0] for p in task.scope}
    role = _role(b, task)
    cands = [p for p in role if p[0] not in plan_tools] or [p for p in role if p not in task.scope]
    if not cands:
        return False
    i = int(u * (len(d.task.steps) + 1))
    d.task.steps.insert(i, _label(b, _pick(b, cands), mid, "token_passthrough", True, present=PASSTHROUGH))
    return True


@injector("confused_deputy")
def _confused_deputy(b: WorkloadBuilder, task: Task, mid: int, u: float) -> bool:
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
    d.task.steps.insert(i, _label(b, _pick(b, cands), mid, "confused_deputy", True))
    return True


@injector("unscoped_delegation")
def _unscoped_delegation(b: WorkloadBuilder, task: Task, mid: int, u: float) -> bool:
    d = _first_delegation(task)
    if d is None:
        return False
    cands = sorted(task.scope - d.task.scope) or sorted(set(_role(b, task)) - d.task.scope)
    if not cands:
        return False
    i = int(u * (len(d.task.steps) + 1))
    d.task.steps.insert(i, _label(b, _pick(b, cands), mid, "unscoped_delegation", True))
    return True


@injector("impersonation")
def _impersonation(b: WorkloadBuilder, task: Task, mid: int, u: float) -> bool:
    own = b.agents[task.agent].archetype
    others = sorted(a for a in b.by_archetype if a != own and b.by_archetype[a])
    if not others:
        return False
    victim = _point(others, u)
    own_role = b.role_of[own]
    cands = sorted(b.role_of[victim] - own_role) or sorted(b.role_of[victim])
    if not cands:
        return False
    as_agent = b.by_archetype[victim][0]
    i = int(u * (len(task.steps) + 1))
    task.steps.insert(i, _label(b, _pick(b, cands), mid, "impersonation", True,
                                present=IMPERSONATE, as_agent=as_agent))
    return True


@injector("stale_authorization")
def _stale_authorization(b: WorkloadBuilder, task: Task, mid: int, u: float) -> bool:
    steps = _tool_steps(task)
    if not steps:
        return False
    i = _point(steps, u)
    # The directory removes the permission after step i; the agent uses it once more.
    task.steps.insert(i + 1, _label(b, task.steps[i].perm, mid, "stale_authorization", True,
                                    entitled=False))
    return True


@injector("resource_overload")
def _resource_overload(b: WorkloadBuilder, task: Task, mid: int, u: float) -> bool:
    steps = _tool_steps(task)
    if not steps:
        return False
    i = _point(steps, u)
    perm = task.steps[i].perm
    prm = b.spec.misuse.params
    burst = []
    for k in range(prm.overload_calls):
        # The first calls look like ordinary use; the excess beyond them is the overload.
        a = _label(b, perm, mid, "resource_overload", k >= prm.overload_setup)
        a.think = prm.overload_interval
        burst.append(a)
    task.steps[i + 1:i + 1] = burst
    return True
