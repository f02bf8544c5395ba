"""`task_policy`: a policy generated for each task when it starts, from what the task declared
(Progent-style privilege control for agents).

At task start the control compiles the task's policy: the permissions of its declared scope
(within the role); for each argument it constrains, the values the task declared (a recipient
must be one of them, a number at most the largest declared, e.g. a refund amount); sends only to
allowed destinations. Each action is then checked against its own task's policy, in-process
(`evaluate: local`) or at a PDP (`evaluate: pdp`). A value the task did not declare (found
during the task, or put there by an attacker) is denied or escalated to a human
(`on_unknown`). The policy ends with the task, so nothing is left to replay or steal.

`policy.generate.render_task_policy` writes a task's policy as rules, Cedar or Rego; the tests
check the three engines agree with `decide` on it.

Defaults: the local check costs about as much as a rules evaluation (50 us, illustrative); the
PDP has the per_action_policy defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from simharness.actions import Perm
from simharness.controls.base import (
    Control,
    ControlParams,
    Credential,
    Decision,
    Ledger,
    Local,
    Request,
    Station,
    TaskContext,
    register,
)
from simharness.controls.per_action_policy import PDPParams
from simharness.controls.review import ReviewParams
from simharness.units import Distribution

ALLOW = Decision(True, ("task-policy",))


@dataclass(frozen=True, slots=True)
class TaskPolicy:
    """One task's generated policy."""

    task_id: int
    scope: frozenset[Perm]  # declared scope within the role
    values: Mapping[str, frozenset]  # constrained argument -> declared text values
    limits: Mapping[str, float]  # constrained argument -> largest declared number
    destinations: frozenset[str]  # external resources a send may go to
    actions: frozenset[str] | None = None  # calls whose arguments are constrained (None: all)


class TaskPolicyParams(ControlParams):
    constrain: Literal["all"] | list[str] = Field(default="all", description=(
        "which arguments the generated policy constrains: all, or a list of names"))
    constrain_actions: Literal["all"] | list[Literal["read", "write", "send", "delete"]] = Field(
        default="all", description=(
            "on which calls arguments are constrained: all, or actions (e.g. [send, write, "
            "delete]: side effects only; reads take any argument, as Progent's policies often do)"))
    on_unknown: Literal["deny", "escalate"] = Field(default="deny", description=(
        "an argument value the task did not declare: deny, or ask a human (`reviewers`)"))
    destinations: Literal["approved"] | list[str] = Field(default="approved", description=(
        "external resources a send may go to: those marked approved, or a list"))
    evaluate: Literal["local", "pdp"] = "local"
    check: Distribution = 0.00005  # type: ignore[assignment]  # local evaluation
    pdp: PDPParams = PDPParams()
    reviewers: ReviewParams = ReviewParams()


@register
class TaskPolicyControl(Control):
    model = "task_policy"
    description = "a policy generated per task from its declared scope and argument values"
    Params = TaskPolicyParams
    params: TaskPolicyParams
    tool_audit = True

    def __init__(self, name: str, params: dict, world):
        super().__init__(name, params, world)
        p = self.params
        if isinstance(p.destinations, list):
            unknown = sorted(set(p.destinations) - set(world.resources))
            if unknown:
                raise ValueError(f"destinations: unknown resource(s) {', '.join(unknown)}")
            self._destinations = frozenset(p.destinations)
        else:
            self._destinations = frozenset(r.name for r in world.resources.values()
                                           if r.external and r.approved)
        if p.evaluate == "pdp" and p.pdp.service_time == "measured":
            raise ValueError("pdp.service_time: measured times a policy engine; task_policy "
                             "evaluates its generated policy natively (give a distribution)")
        self._policies: dict[int, TaskPolicy] = {}
        # True: keep a task's policy after it ends (decisions still see task_active False);
        # the benchmark sets it to replay recorded requests. A run drops them (memory).
        self.keep_task_state = False
        # The argument names the scenario's calls carry, those constrained.
        self._names = sorted({n for t in world.spec.tasks.values() for step in t.steps
                              for n in getattr(step, "args", {})
                              if p.constrain == "all" or n in p.constrain})
        self._constrained_actions = (None if p.constrain_actions == "all"
                                     else frozenset(p.constrain_actions))
        self._violation = Decision(False, ("argument-not-declared",),
                                   escalate=p.on_unknown == "escalate")

    def generate(self, ctx: TaskContext) -> TaskPolicy:
        """The task's policy from what it declared when it began: every constrained argument
        the scenario's calls carry gets the task's declared values (none declared: no value
        is allowed), numbers a limit (the largest declared)."""
        values: dict[str, frozenset] = {}
        limits: dict[str, float] = {}
        for name in self._names:
            declared = ctx.task.declared_args.get(name, frozenset())
            numbers = [v for v in declared if isinstance(v, float)]
            if numbers:
                limits[name] = max(numbers)
            values[name] = frozenset(v for v in declared if not isinstance(v, float))
        return TaskPolicy(ctx.task.id, ctx.task.declared & ctx.agent.role, values, limits,
                          self._destinations, self._constrained_actions)

    def on_task_start(self, ctx: TaskContext, ledger: Ledger, now: float) -> Credential | None:
        self._policies[ctx.task.id] = self.generate(ctx)
        return None

    def on_task_end(self, ctx: TaskContext, cred: Credential | None, ledger: Ledger, now: float) -> None:
        if not self.keep_task_state:
            self._policies.pop(ctx.task.id, None)

    def decide(self, req: Request) -> Decision:
        if self.is_quarantined(req):
            return Decision(False, ("identity-quarantined",))
        if not req.attested:
            return Decision(False, ("unattested",))
        policy = self._policies.get(req.task_id)
        if policy is None or not req.task_active:
            return Decision(False, ("no-task-policy",))
        # The policy's scope is the declared scope within the role: what the request shows as
        # in_scope and entitled (read from there, so the authority probe's memo, keyed on
        # in_scope, stays exact).
        if not (req.entitled and req.in_scope):
            return Decision(False, ("outside-task-policy",))
        if req.resource.external and req.resource.name not in policy.destinations:
            return Decision(False, ("destination-not-allowed",))
        if policy.actions is not None and req.action not in policy.actions:
            return ALLOW
        for name, value in req.args.items():
            allowed = policy.values.get(name)
            if allowed is None:  # not constrained
                continue
            if isinstance(value, float):
                limit = policy.limits.get(name)
                if limit is None or not value <= limit:  # NaN is never within a limit
                    return self._violation
            elif value not in allowed:
                return self._violation
        return ALLOW

    def path(self):
        if self.params.evaluate == "local":
            return [Local(self.params.check)]
        p = self.params.pdp
        return [Station("pdp", p.servers, p.rtt, p.service_time, p.timeout, p.fail_mode,
                        p.cache.ttl, tuple(p.cache.key), p.max_queue, p.on_timeout)]

    def reviewers(self):
        return self.params.reviewers.pool() if self.params.on_unknown == "escalate" else None

    def attributes(self, req: Request) -> bool:
        # The decision names the task; the identity names the agent unless shared.
        return req.attested and req.identity_mode != "shared"
