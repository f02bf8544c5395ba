"""`jit_per_task`: a short-lived token per task, scoped from the task's declared scope (what was
known or predicted of its plan when it began), checked locally.

Defaults: `ttl: 15m` is the AWS STS minimum session (900 s; default 3600 s); SPIRE JWT-SVIDs
default to 5 min (docs/sources.md, credential lifetimes).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from simharness.actions import Perm, intern_perm
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
from simharness.units import Distribution, Duration, Servers


class TokenServiceParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    servers: Servers = 4
    rtt: Distribution = 0.002  # type: ignore[assignment]
    service_time: Distribution = Field(  # type: ignore[assignment]
        default_factory=lambda: {"dist": "lognormal", "p50": "5ms", "p99": "40ms"})


class JITParams(ControlParams):
    granularity: Literal["tool", "tool_action", "permission"] = "tool_action"
    ttl: Duration = 900.0
    revoke_on_complete: bool = True
    renew: bool = True
    sender_constrained: bool = False
    audience_binding: bool = True
    delegation: Literal["exchange", "passthrough"] = "exchange"
    check: Distribution = 0.00002  # type: ignore[assignment]  # local signature + scope check
    token_service: TokenServiceParams = TokenServiceParams()


def expand_scope(plan: frozenset[Perm], role: frozenset[Perm], granularity: str,
                 tool_actions: dict[str, tuple[str, ...]],
                 tool_resources: dict[str, tuple[str, ...]]) -> frozenset[Perm]:
    """The token scope for a plan at a granularity, never beyond the role."""
    if granularity == "permission":
        scope = set(plan)
    elif granularity == "tool_action":
        scope = {intern_perm(t, a, r) for t, a, _ in plan for r in tool_resources[t]}
    else:
        scope = {intern_perm(t, a, r) for t, _, _ in plan for a in tool_actions[t]
                     for r in tool_resources[t]}
    return frozenset(scope) & role


@register
class JITPerTask(Control):
    model = "jit_per_task"
    description = "per-task token scoped from the declared plan, short ttl, revoked on completion"
    Params = JITParams
    params: JITParams
    tool_audit = True

    def _scope(self, ctx: TaskContext, archetype: str) -> frozenset[Perm]:
        w = self.world
        return expand_scope(ctx.task.declared, w.roles[archetype], self.params.granularity,
                            w.tool_actions, w.tool_resources)

    def on_task_start(self, ctx: TaskContext, ledger: Ledger, now: float) -> Credential | None:
        p = self.params
        if ctx.parent_credential is not None and p.delegation == "passthrough":
            return ctx.parent_credential  # the delegate works with the delegator's token
        scope = self._scope(ctx, ctx.agent.archetype)
        # Legacy SaaS behind a service account cannot be scoped: the token carries it whole.
        if any(perm in self.world.service_account_perms for perm in scope):
            scope = scope | (self.world.service_account_perms & self.world.roles[ctx.agent.archetype])
        return ledger.issue(
            ctx.identity, scope, now, p.ttl, kind="task", task_id=ctx.task.id,
            bound_to=ctx.identity if p.sender_constrained else None,
            audience=frozenset(t for t, _, _ in scope) if p.audience_binding else None,
            revocable=ctx.revocable)

    def renew(self, ctx: TaskContext, old: Credential, ledger: Ledger, now: float) -> Credential | None:
        """A fresh token when the old one expired mid-task (None if renewal is off)."""
        if not self.params.renew or math.isinf(old.expires):
            return None
        return ledger.issue(old.holder, old.perms, now, self.params.ttl, kind="task",
                            task_id=old.task_id, bound_to=old.bound_to, audience=old.audience,
                            revocable=old.revocable)

    def on_task_end(self, ctx: TaskContext, cred: Credential | None, ledger: Ledger, now: float) -> None:
        # A passed-through token belongs to the delegator's task: the delegator revokes it.
        if self.params.revoke_on_complete and cred is not None and cred.task_id == ctx.task.id:
            ledger.revoke(cred, now)

    def decide(self, req: Request) -> Decision:
        cred = req.credential
        t = req.time
        if cred is None:
            return Decision(False, ("no-token",))
        if self.is_quarantined(req):
            return Decision(False, ("identity-quarantined",))
        if cred.revoked is not None and t >= cred.revoked:
            return Decision(False, ("token-revoked",))
        if t >= cred.expires:
            return Decision(False, ("token-expired",))
        if cred.bound_to is not None and (cred.bound_to != req.identity or not req.attested):
            return Decision(False, ("sender-constraint",))
        if cred.audience is not None and req.tool not in cred.audience:
            return Decision(False, ("wrong-audience",))
        if req.perm not in cred.perms:
            return Decision(False, ("out-of-token-scope",))
        return Decision(True, ("token-valid",))

    def path(self):
        return [Local(self.params.check)]

    def token_service(self) -> Station:
        ts = self.params.token_service
        return Station("token_service", ts.servers, ts.rtt, ts.service_time)

    def attributes(self, req: Request) -> bool:
        # A token per task names the task; the holder names the agent unless shared.
        c = req.credential
        return req.attested and c is not None and c.task_id >= 0 and req.identity_mode != "shared"
