"""`layered`: several control models in series; every member must allow.

Latency is the sum of the members' decision paths. Each member keeps its own credentials in a
private ledger; the run's ledger records one composite credential whose grant is the
intersection of the members' credentials (a member that issues none, like per_action_policy,
constrains decisions, not the standing grant) and whose life ends with the first member's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from simharness.controls.base import (
    Control,
    ControlParams,
    Credential,
    Decision,
    Ledger,
    Request,
    TaskContext,
    World,
    get_model,
    register,
)


class MemberSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    model: str
    params: dict[str, Any] = Field(default_factory=dict)


class LayeredParams(ControlParams):
    members: list[MemberSpec] = Field(min_length=1)


@register
class Layered(Control):
    model = "layered"
    description = "members in series: every member must allow; latency adds up"
    Params = LayeredParams
    params: LayeredParams
    tool_audit = True  # checked against the members below
    credential_identity_matters = True  # members' parts are found by the composite's id

    def __init__(self, name: str, params: dict, world: World):
        super().__init__(name, params, world)
        self.members: list[Control] = [
            get_model(m.model)(f"{name}.{i}", m.params, world)
            for i, m in enumerate(self.params.members)
        ]
        self._private = Ledger(world.weight)
        self._parts: dict[int, tuple[Credential | None, ...]] = {}
        if self.params.detector is not None and not any(m.tool_audit for m in self.members):
            raise ValueError("no member of this layered control has a tool-level audit log: "
                             "a detector cannot see its actions (remove `detector`)")
        self.standing = any(m.standing for m in self.members)  # type: ignore[misc]

    def _composite(self, holder: str, parts: tuple[Credential | None, ...], ledger: Ledger,
                   now: float, **kw: Any) -> Credential | None:
        held = [c for c in parts if c is not None]
        if not held:
            return None
        perms = frozenset.intersection(*(c.perms for c in held))
        expires = min(c.expires for c in held)
        task_ids = [c.task_id for c in held if c.task_id >= 0]
        cred = ledger.issue(holder, perms, now, expires - now,
                            kind="task" if task_ids else "role",
                            task_id=task_ids[0] if task_ids else -1,
                            revocable=all(c.revocable for c in held), **kw)
        self._parts[cred.id] = parts
        return cred

    def credential_for(self, identity, archetype, revocable, ledger, now):
        parts = tuple(m.credential_for(identity, archetype, revocable, self._private, now)
                      for m in self.members)
        prev = self._standing.get(identity)
        if prev is not None and self._parts.get(prev.id) == parts and prev.end > now:
            return prev
        cred = self._composite(identity, parts, ledger, now, notify=False)
        if cred is not None:
            self._standing[identity] = cred
            ledger.notify(identity, now)
        return cred

    def on_task_start(self, ctx: TaskContext, ledger: Ledger, now: float) -> Credential | None:
        task_parts = [m.on_task_start(ctx, self._private, now) for m in self.members]
        if all(c is None for c in task_parts):
            return None
        a = ctx.agent
        parts = tuple(
            c if c is not None else m.credential_for(ctx.identity, a.archetype, ctx.revocable,
                                                     self._private, now)
            for m, c in zip(self.members, task_parts, strict=True))
        return self._composite(ctx.identity, parts, ledger, now)

    def on_task_end(self, ctx: TaskContext, cred: Credential | None, ledger: Ledger, now: float) -> None:
        parts = self._parts.get(cred.id, ()) if cred is not None else ()
        for m, part in zip(self.members, parts or (None,) * len(self.members), strict=True):
            m.on_task_end(ctx, part, self._private, now)
        if cred is not None and any(p is not None and p.end <= now for p in parts):
            ledger.revoke(cred, now)

    def on_allow(self, req: Request, ledger: Ledger, now: float) -> None:
        for m in self.members:
            m.on_allow(req, ledger, now)

    def observe(self, req: Request, decision: Decision) -> None:
        self._each_member(req, lambda m: m.observe(req, decision))

    def on_deviation(self, identity: str, ledger: Ledger, now: float) -> int:
        n = super().on_deviation(identity, ledger, now)
        for m in self.members:
            m.on_deviation(identity, self._private, now)
        return n

    def _each_member(self, req: Request, fn: Callable[[Control], Any]) -> Any:
        """Call fn(member) for each member until one returns a truthy value (returned), each
        member seeing the request with its own part of the composite credential. The request's
        credential is swapped in place and restored (cheaper than a copy per member)."""
        original = req.credential
        parts = self._parts.get(original.id) if original is not None else None
        try:
            for i, m in enumerate(self.members):
                if parts is not None:
                    req.credential = parts[i]
                result = fn(m)
                if result:
                    return result
            return None
        finally:
            req.credential = original

    def decide(self, req: Request) -> Decision:
        if self.is_quarantined(req):
            return Decision(False, ("identity-quarantined",))
        reasons: list[str] = []
        escalated = False

        def judge(m: Control) -> Decision | None:
            nonlocal escalated
            d = m.decide(req)
            reasons.extend(f"{m.model}:{r}" for r in d.reasons)
            if d.escalate:  # a human may still approve, unless a later member denies outright
                escalated = True
                return None
            return None if d.allow else Decision(False, tuple(reasons), d.errors)

        denied = self._each_member(req, judge)
        if denied is not None:
            return denied
        return Decision(not escalated, tuple(reasons), escalate=escalated)

    def facts(self) -> dict[str, Any]:
        return {m.name: f for m in self.members if (f := m.facts())}

    def path(self):
        return [stage for m in self.members for stage in m.path()]

    def token_service(self):
        return next((s for m in self.members if (s := m.token_service()) is not None), None)

    def reviewers(self):
        """The first member's reviewers: one pool hears every escalation of the stack."""
        return next((r for m in self.members if (r := m.reviewers()) is not None), None)

    def visible(self, req: Request) -> bool:
        return any(m.visible(req) for m in self.members)

    def attributes(self, req: Request) -> bool:
        return bool(self._each_member(req, lambda m: m.attributes(req)))
