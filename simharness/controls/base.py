"""The control protocol: Request, Decision, Credential, the ledger of credentials, the registry.

A control model judges requests (`decide`, pure and synchronous: no SimPy, no clock, no I/O)
and manages credentials through lifecycle hooks. The engine turns its decision path into
latency and owns time.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simharness.actions import NO_ARGS, NO_NAMES, Perm
from simharness.spec import Resource, ScenarioSpec
from simharness.units import Duration
from simharness.workload import permission_weights, role_perms

ENTRY_POINT_GROUP = "simharness.controls"


@dataclass(slots=True, eq=False)
class Credential:
    """A grant: holder identity, permission set G with precomputed weight W(G), lifetime."""

    id: int
    holder: str
    perms: frozenset[Perm]
    weight: float  # W(G), computed once so exposure accounting is O(1) per event
    issued: float
    expires: float = math.inf
    revoked: float | None = None
    bound_to: str | None = None  # sender-constrained: only this identity may present it
    audience: frozenset[str] | None = None  # tools it may be presented to (None: any)
    task_id: int = -1  # >= 0: scoped to one task
    kind: str = "role"  # role | task | capability
    revocable: bool = True  # False inside third-party platforms: the organisation cannot revoke

    def live(self, t: float) -> bool:
        return self.issued <= t < self.expires and (self.revoked is None or t < self.revoked)

    @property
    def end(self) -> float:
        """When it stops being usable (expiry or revocation)."""
        return self.expires if self.revoked is None else min(self.expires, self.revoked)


class Ledger:
    """Every credential issued in a run, in issue order (the engine reads it for metrics)."""

    __slots__ = ("credentials", "_weight", "tokens_issued", "revocations_refused", "on_change")

    def __init__(self, weight: dict[Perm, float]):
        self.credentials: list[Credential] = []
        self._weight = weight
        self.tokens_issued = 0
        self.revocations_refused = 0
        # Called with (holder, time) after an issue or a revocation (the authority probe).
        self.on_change: Callable[[str, float], None] | None = None

    def issue(self, holder: str, perms: frozenset[Perm], now: float, ttl: float = math.inf,
              notify: bool = True, **kw: Any) -> Credential:
        """A new credential. notify=False: the caller calls `notify` once it has stored it
        (where the holder can be seen to hold it)."""
        w = self._weight
        cred = Credential(len(self.credentials), holder, perms, sum(w.get(p, 0.0) for p in perms),
                          now, now + ttl, **kw)
        self.credentials.append(cred)
        if cred.kind != "role":
            self.tokens_issued += 1
        if notify:
            self.notify(holder, now)
        return cred

    def notify(self, holder: str, now: float) -> None:
        """Tell the listener (the authority probe) that the holder's credentials changed."""
        if self.on_change is not None:
            self.on_change(holder, now)

    def revoke(self, cred: Credential, now: float) -> bool:
        """Revoke unless already ended or out of reach (third-party platform)."""
        if cred.revoked is not None or now >= cred.expires:
            return False
        if not cred.revocable:
            self.revocations_refused += 1
            return False
        cred.revoked = now
        self.notify(cred.holder, now)
        return True


@dataclass(slots=True)
class Request:
    """What an action asks for; each control looks only at the part it can see."""

    time: float
    identity: str  # as presented
    identity_mode: str  # shared | per_agent | per_task (of the presented identity)
    attested: bool  # the presenter's workload attestation matches the presented identity
    source: str  # "agent" (inside the organisation's paths) or "external" (an outside attacker)
    agent: str
    archetype: str
    platform: str
    tool: str
    action: str
    resource: Resource
    perm: Perm
    bytes_out: int
    data_sensitivity: str | None
    task_id: int
    task_type: str
    task_active: bool
    in_scope: bool  # perm in the task's declared scope (what was known when it began)
    entitled: bool  # the directory currently grants perm to the presented identity's role
    chain_depth: int
    chain_origin: str  # identity of the top-level task's agent
    origin_permits: bool  # perm in the chain origin's role (confused-deputy check)
    token_mode: str  # none | exchange | passthrough
    credential: Credential | None
    risk: float
    # argument values by name (a factory only because dataclasses refuse a mappingproxy default)
    args: Mapping[str, Any] = field(default_factory=lambda: NO_ARGS)
    args_unknown: frozenset[str] = NO_NAMES  # names whose value the task did not declare
    # Provenance, what a data-flow control tracks: resources the task has read so far, those
    # the undeclared argument values were read from, and those whose data the call passes on.
    read_sources: frozenset[str] = NO_NAMES
    arg_sources: frozenset[str] = NO_NAMES
    carries: frozenset[str] = NO_NAMES


@dataclass(frozen=True, slots=True)
class Decision:
    """allow, or deny; `escalate`: denied unless a human reviewer approves (the engine then
    queues the request at the control's reviewer pool, `Control.reviewers`)."""

    allow: bool
    reasons: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    escalate: bool = False


ALLOW = Decision(True, ("allow",))


@dataclass(frozen=True, slots=True)
class Local:
    """A decision taken in-process (latency from a distribution, no queue)."""

    latency: Any  # units distribution


@dataclass(frozen=True, slots=True)
class Station:
    """A decision service with a queue: a PDP, an inspecting proxy or a token service."""

    name: str
    servers: float  # math.inf: no queue
    rtt: Any  # distribution (network round trip)
    service: Any  # distribution (service time per request)
    timeout: float = math.inf
    fail_mode: str = "closed"
    cache_ttl: float = 0.0
    cache_key: tuple[str, ...] = ("identity", "tool", "action", "resource")
    max_queue: float = math.inf  # requests waiting beyond this are rejected at once
    # A request that times out while queued: the server still serves it when it gets to it
    # (the client left, the server does not know) or drops it unserved.
    on_timeout: str = "keep_serving"


@dataclass(frozen=True, slots=True)
class ReviewPool:
    """Human reviewers that escalated requests wait for (a queue, like a Station, but judged
    by people whose attention wears down with the approvals they give).

    A rested reviewer rejects a misuse with probability `catch_rate`; with L approvals per
    reviewer in the last hour it is catch_rate * exp(-L / fatigue). A legitimate request is
    rejected with probability `false_reject`. Requests wait for the next working hours."""

    reviewers: int
    service: Any  # distribution of the time one review takes
    timeout: float
    on_timeout: str  # deny | allow
    hours: tuple[float, float] | None  # (start, end) hour of day; None: always staffed
    catch_rate: float
    false_reject: float
    fatigue: float  # approvals per reviewer-hour at which the catch rate falls by 1/e


class World:
    """Scenario facts every control may know: roles, resources, weights."""

    def __init__(self, spec: ScenarioSpec):
        self.spec = spec
        self.weight = permission_weights(spec)
        self.roles: dict[str, frozenset[Perm]] = {a.name: role_perms(spec, a.role) for a in spec.agents}
        self.resources: dict[str, Resource] = {r.name: r for r in spec.resources}
        self.all_perms = frozenset(self.weight)
        self.tool_resources = {t.name: tuple(t.resources) for t in spec.tools}
        self.tool_actions = {t.name: tuple(t.actions) for t in spec.tools}
        # Legacy SaaS: a resource reachable only through one broad service-account credential.
        self.service_account_perms = frozenset(p for p in self.all_perms
                                               if self.resources[p[2]].auth == "service_account")


class TaskContext:
    """What a control learns when a task starts: `task.declared` (its declared scope, never the
    realised plan), owner, delegation chain."""

    __slots__ = ("task", "agent", "identity", "parent_credential", "chain_depth", "revocable")

    def __init__(self, task, agent, identity: str, parent_credential: Credential | None,
                 chain_depth: int, revocable: bool):
        self.task = task
        self.agent = agent
        self.identity = identity
        self.parent_credential = parent_credential
        self.chain_depth = chain_depth
        self.revocable = revocable


class DetectorParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    threshold: float = Field(default=0.9, ge=0, le=1)
    delay: Duration = 60.0


class ControlParams(BaseModel):
    """Parameters every model accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    detector: DetectorParams | None = None
    revoke_on_deviation: bool = False
    quarantine: Duration = 3600.0  # how long a flagged identity stays revoked


class Control:
    """Base class of control models. Subclasses set `model`, `Params` and override hooks."""

    model: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Params: ClassVar[type[ControlParams]] = ControlParams
    #: the model's audit log has tool-level records (a detector can work on it)
    tool_audit: ClassVar[bool] = False
    #: the model keeps a standing credential per identity
    standing: ClassVar[bool] = False
    #: decide() finds state by credential object (not only by what it grants): the authority
    #: probe must then not treat two credentials with the same grant as the same
    credential_identity_matters: ClassVar[bool] = False

    def __init__(self, name: str, params: dict[str, Any], world: World):
        self.name = name
        self.params = self.Params.model_validate(params or {})
        if self.params.detector is not None and not self.tool_audit:
            raise ValueError(f"model {self.model!r} has no tool-level audit log: a detector "
                             "cannot see its actions (remove `detector`)")
        self.world = world
        self.quarantined: dict[str, float] = {}
        self._standing: dict[str, Credential] = {}

    # -- lifecycle hooks (called by the engine with the ledger and the current time) --------
    def standing_grant(self, archetype: str) -> frozenset[Perm]:
        """The permissions a standing credential of this archetype's identity carries."""
        return frozenset()

    def credential_for(self, identity: str, archetype: str, revocable: bool, ledger: Ledger,
                       now: float) -> Credential | None:
        """The identity's standing credential, issued on first use (never for grant-free models)."""
        if not self.standing:
            return None
        cred = self._standing.get(identity)
        if cred is None or (cred.end <= now and self.quarantined.get(identity, 0.0) <= now):
            cred = ledger.issue(identity, self.standing_grant(archetype), now, revocable=revocable,
                                notify=False)
            self._standing[identity] = cred
            ledger.notify(identity, now)
        return cred

    def standing_credential(self, identity: str) -> Credential | None:
        """The standing credential the identity holds now, without issuing one (read-only)."""
        return self._standing.get(identity)

    def on_task_start(self, ctx: TaskContext, ledger: Ledger, now: float) -> Credential | None:
        """A credential for the task, if the model issues one (through the token service)."""
        return None

    def renew(self, ctx: TaskContext, old: Credential, ledger: Ledger, now: float) -> Credential | None:
        """A fresh task credential when `old` expired mid-task (None: the task goes on without)."""
        return None

    def on_task_end(self, ctx: TaskContext, cred: Credential | None, ledger: Ledger, now: float) -> None:
        """Clean up after a task (e.g. revoke its token)."""

    def on_allow(self, req: Request, ledger: Ledger, now: float) -> None:
        """After an allowed action (e.g. issue a short capability)."""

    def observe(self, req: Request, decision: Decision) -> None:
        """After every decision: update state that later decisions read (rate counters)."""

    def on_deviation(self, identity: str, ledger: Ledger, now: float) -> int:
        """A detector flagged `identity`: revoke its live credentials; returns how many."""
        if not self.params.revoke_on_deviation:
            return 0
        self.quarantined[identity] = now + self.params.quarantine
        n = 0
        for cred in ledger.credentials:
            if cred.holder == identity and cred.live(now):
                n += ledger.revoke(cred, now)
        return n

    # -- decisions ----------------------------------------------------------------------------
    def decide(self, req: Request) -> Decision:
        """Allow or deny one request. Pure: reads the request and the model's state only."""
        raise NotImplementedError

    def path(self) -> list[Local | Station]:
        """The decision path the engine turns into latency (in order)."""
        return []

    def token_service(self) -> Station | None:
        """The queue credentials are issued through at task start, if any."""
        return None

    def reviewers(self) -> ReviewPool | None:
        """The human reviewers escalated decisions wait for, if the model escalates."""
        return None

    def visible(self, req: Request) -> bool:
        """The control sees this action at all (else it is invisible to audit and detection)."""
        return True

    def attributes(self, req: Request) -> bool:
        """The tool-invocation record names both the agent and the task."""
        return False

    def facts(self) -> dict[str, Any]:
        """What the model determined when built, for the manifest (e.g. measured timings)."""
        return {}

    def is_quarantined(self, req: Request) -> bool:
        until = self.quarantined.get(req.identity)
        return until is not None and req.time < until


# -- registry ------------------------------------------------------------------------------
_REGISTRY: dict[str, type[Control]] = {}


def register(cls: type[Control]) -> type[Control]:
    """Class decorator: make a control model available by its `model` name."""
    _REGISTRY[cls.model] = cls
    return cls


def _load_entry_points() -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            try:
                _REGISTRY[ep.name] = ep.load()
            except Exception:  # a broken plug-in must not break the built-ins
                continue


def registered() -> dict[str, type[Control]]:
    """Every registered control model by name (built-ins and installed plug-ins)."""
    _load_entry_points()
    return dict(sorted(_REGISTRY.items()))


def get_model(name: str) -> type[Control]:
    """The control model class for `name`; unknown names get a 'did you mean'. Built-ins are
    entry points of this package, exactly as plug-ins are (pyproject.toml)."""
    if name not in _REGISTRY:
        _load_entry_points()  # lazily, only on a registry miss
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(sorted(_REGISTRY))}"
        raise KeyError(f"unknown control model {name!r}{hint}")
    return _REGISTRY[name]


def make(name: str, model: str, params: dict[str, Any], world: World) -> Control:
    """Build a control from a profile (name, model, params)."""
    return get_model(model)(name, params, world)


def params_problems(model: str, params: dict[str, Any], spec: ScenarioSpec,
                    explain: Callable[[ValidationError, type, Any], list[tuple[tuple, str]]]
                    | None = None) -> list[tuple[tuple, str]]:
    """Validation problems of a control's params as (path inside params, message).
    `explain` turns a schema error into user-facing (path, message) pairs (the loader's, with
    did-you-mean); without it pydantic's own wording is used."""
    try:
        cls = get_model(model)
    except KeyError as e:
        return [(("model",), str(e.args[0]))]
    try:
        cls("check", params, World(spec))
    except ValidationError as e:
        if explain is not None:
            return [(("params", *path), message) for path, message in explain(e, cls.Params, params)]
        return [(("params", *err["loc"]), err["msg"]) for err in e.errors()]
    except (ValueError, KeyError, FileNotFoundError) as e:
        return [(("params",), str(e))]
    return []


__all__ = [
    "ALLOW", "Control", "ControlParams", "Credential", "Decision", "DetectorParams", "Ledger",
    "Local", "Request", "ReviewPool", "Station", "TaskContext", "World", "get_model", "make", "register",
    "registered",
]
