"""The data types of a sampled workload: agents, actions, tasks, delegations, misuse instances.

Plain data, no sampling and no engine: `workload.py` builds them, `misuse.py` rewrites a task's
steps, the engine replays them. Kept apart so that neither of those imports the other's logic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any

Perm = tuple[str, str, str]  # (tool, action, resource)

_PERMS: dict[Perm, Perm] = {}


def intern_perm(tool: str, action: str, resource: str) -> Perm:
    """The one tuple of a permission: equal permissions built through here are the same object,
    so set and dict look-ups on the hot path match by identity, not element by element."""
    p = (tool, action, resource)
    return _PERMS.setdefault(p, p)

# How an action presents its credential (the engine picks the credential; controls judge it).
OWN = "own"  # the actor's current credential for this task
STOLEN = "stolen"  # an outside attacker uses a leaked credential
REPLAY = "replay"  # the agent reuses its ended task's credential
PASSTHROUGH = "passthrough"  # a delegate presents the delegator's credential
IMPERSONATE = "impersonate"  # the agent presents another archetype's identity

# What produced an action (the `source` column of the action log).
PLAN = "plan"  # a step of the task's plan
DEVIATION = "deviation"  # a legitimate departure: an extra look-up or a substituted step
RETRY = "retry"  # the agent asks again after a denial
REPLAN = "replan"  # the agent tries an alternative after a denial
MISUSE = "misuse"  # injected by a misuse

NO_ARGS: Mapping[str, Any] = MappingProxyType({})
NO_NAMES: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class AgentInfo:
    index: int
    name: str  # e.g. "support-3"
    archetype: str
    identity_mode: str  # shared | per_agent | per_task
    platform: str  # first_party | third_party
    role: frozenset[Perm]

    @property
    def standing_identity(self) -> str | None:
        """The identity the agent holds between tasks (None for per_task identities)."""
        if self.identity_mode == "shared":
            return self.archetype
        if self.identity_mode == "per_agent":
            return self.name
        return None


@dataclass(frozen=True, slots=True)
class Args:
    """What one call passes: argument values, which of them the task did not declare when it
    began (found during the task, or put there by an attacker), the resources those undeclared
    values were read from (`derived`), and the resources whose data the call passes on
    (`carries`, a send's payload): the provenance a data-flow control tracks."""

    values: Mapping[str, Any]
    unknown: frozenset[str] = NO_NAMES
    derived: frozenset[str] = NO_NAMES
    carries: frozenset[str] = NO_NAMES


class Action:
    """One pre-sampled tool invocation of a task's plan.

    A plain class with six slots: a run holds one per planned action (a million in a large
    run), so labels that are the same for most actions (misuse, source) live on the class and
    only the subclasses that differ override them."""

    __slots__ = ("perm", "think", "duration", "risk", "bytes_out", "args")
    source: str = PLAN
    misuse_id: int = -1
    kind: str | None = None
    goal: bool = False  # a goal action of a misuse (counts for damage and outcomes)
    present: str = OWN
    as_agent: int = -1  # impersonation: index of the agent whose identity is presented
    entitled: bool = True  # False: the directory revoked this permission (stale_authorization)
    data_sensitivity: str | None = None  # a send carries data of this sensitivity

    def __init__(self, perm: Perm, think: float, duration: float, risk: float,
                 bytes_out: int = 0, args: Args | None = None):
        self.perm = perm
        self.think = think  # delay before the request (or offset, for attacker and replay uses)
        self.duration = duration  # tool execution time if allowed
        self.risk = risk  # the noisy risk signal a detector or policy sees
        self.bytes_out = bytes_out
        self.args = args


class ExtraAction(Action):
    """A legitimate action the plan does not contain (a look-up, a check): a deviation."""

    __slots__ = ()
    source = DEVIATION


class SubstitutedAction(Action):
    """A planned step done with another permitted tool or resource: a deviation."""

    __slots__ = ()
    source = DEVIATION


class InjectedAction(Action):
    """An action a misuse injected, labelled with its instance id and kind."""

    __slots__ = ("misuse_id", "kind", "goal", "present", "as_agent", "entitled",
                 "data_sensitivity")
    source = MISUSE

    def __init__(self, perm: Perm, think: float, duration: float, risk: float,
                 bytes_out: int = 0, args: Args | None = None, *, misuse_id: int, kind: str,
                 goal: bool, present: str = OWN, as_agent: int = -1, entitled: bool = True,
                 data_sensitivity: str | None = None):
        super().__init__(perm, think, duration, risk, bytes_out, args)
        self.misuse_id, self.kind, self.goal = misuse_id, kind, goal
        self.present, self.as_agent, self.entitled = present, as_agent, entitled
        self.data_sensitivity = data_sensitivity


@dataclass(slots=True)
class Task:
    id: int
    type: str
    agent: int
    arrival: float
    steps: list  # Action | Delegation, in order
    scope: frozenset[Perm]  # the permissions its own plan uses (what misuse departs from)
    depth: int = 0
    misuse_id: int = -1
    kind: str | None = None
    leak_step: int = -1  # credential_theft: the step whose credential leaks
    attacker: tuple[Action, ...] = ()  # after the leak, think = offset (credential_theft)
    replay: tuple[Action, ...] = ()  # after the task ends, think = offset (token_replay)
    # What controls are told when the task starts (declared_scope); never the realised plan.
    declared: frozenset[Perm] = frozenset()
    # Argument values the task declared when it began, by name (what a task policy may allow).
    declared_args: Mapping[str, frozenset] = field(default_factory=lambda: NO_ARGS)


@dataclass(slots=True)
class Delegation:
    """A hand-off: the sub-task runs on another agent and the delegator waits for it."""

    think: float
    task: Task


@dataclass(frozen=True, slots=True)
class MisuseInstance:
    id: int
    kind: str
    task: int
    agent: int
    arrival: float


def planned_steps(task: Task) -> list[int]:
    """Indexes of the task's tool steps that stand for a planned step (extras and injected
    actions excluded; a substituted step still stands for its planned one)."""
    return [i for i, s in enumerate(task.steps) if type(s) is Action or type(s) is SubstitutedAction]


@lru_cache(maxsize=4096)
def alternatives(role: frozenset[Perm], perm: Perm) -> tuple[Perm, ...]:
    """Other permissions of a role for the same action (another tool or resource), sorted:
    what a substituted step or a replan after a denial may use instead of `perm`."""
    return tuple(sorted(p for p in role if p[1] == perm[1] and p != perm))
