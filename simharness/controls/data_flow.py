"""`data_flow`: taint tracking of what an agent read (CaMeL-style information-flow control).

Values carry labels: the resources they were read from. A call to a sink (send, write) whose
arguments derive from an untrusted source (a resource an outsider can write: `untrusted: true`
in the scenario, or the `untrusted` list here) is denied or escalated; so is a send that
carries data more sensitive than `max_external` to an external destination.

`granularity` is what the control can track:
- `value`: each value's own provenance (the workload records which reads an argument was found
  in and which resources a call's payload carries), as a capability-tracking interpreter does;
- `task`: everything the task produced after reading something is labelled with all of it, as
  a monitor that sees only the conversation does.

It does not restrict which tools or resources may be used: layer it behind an access control.
Defaults are illustrative (docs/sources.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from simharness.controls.base import (
    Control,
    ControlParams,
    Decision,
    Local,
    Request,
    World,
    register,
)
from simharness.controls.review import ReviewParams
from simharness.units import Distribution

CLEAN = Decision(True, ("flow-clean",))


class DataFlowParams(ControlParams):
    granularity: Literal["value", "task"] = Field(default="value", description=(
        "value: each value's own provenance; task: everything read so far in the task"))
    untrusted: Literal["marked"] | list[str] = Field(default="marked", description=(
        "untrusted sources: resources marked `untrusted: true` in the scenario, or a list"))
    sinks: list[str] = Field(default_factory=lambda: ["send", "write"], description=(
        "actions whose arguments must not derive from untrusted content"))
    max_external: str = Field(default="internal", description=(
        "the most sensitive data (a sensitivity level) a send may carry outside"))
    on_violation: Literal["deny", "escalate"] = "deny"
    check: Distribution = 0.00002  # type: ignore[assignment]  # label propagation and check
    reviewers: ReviewParams = ReviewParams()


@register
class DataFlow(Control):
    model = "data_flow"
    description = "taint tracking: no untrusted-derived arguments to sinks, no sensitive egress"
    Params = DataFlowParams
    params: DataFlowParams
    tool_audit = True

    def __init__(self, name: str, params: dict, world: World):
        super().__init__(name, params, world)
        p = self.params
        resources = world.resources
        if isinstance(p.untrusted, list):
            unknown = sorted(set(p.untrusted) - set(resources))
            if unknown:
                raise ValueError(f"untrusted: unknown resource(s) {', '.join(unknown)}")
            self._untrusted = frozenset(p.untrusted)
        else:
            self._untrusted = frozenset(n for n, r in resources.items() if r.untrusted)
        levels = world.spec.weights.sensitivity
        if p.max_external not in levels:
            raise ValueError(f"max_external: unknown sensitivity level {p.max_external!r}; "
                             f"known: {', '.join(levels)}")
        ceiling = levels[p.max_external]
        # Resources whose data must not leave: more sensitive than max_external.
        self._secret = frozenset(n for n, r in resources.items() if levels[r.sensitivity] > ceiling)
        self._secret_levels = frozenset(lv for lv, w in levels.items() if w > ceiling)
        self._sinks = frozenset(p.sinks)
        self._task_level = p.granularity == "task"
        esc = p.on_violation == "escalate"
        self._tainted = Decision(False, ("untrusted-flow",), escalate=esc)
        self._egress = Decision(False, ("sensitive-egress",), escalate=esc)

    def decide(self, req: Request) -> Decision:
        if self.is_quarantined(req):
            return Decision(False, ("identity-quarantined",))
        if req.action in self._sinks:
            sources = req.read_sources if self._task_level else req.arg_sources
            if not sources.isdisjoint(self._untrusted):
                return self._tainted
        if req.action == "send" and req.resource.external:
            if self._task_level:
                # The task's context is the payload: all it read, however it was labelled.
                leaks = (not req.read_sources.isdisjoint(self._secret)
                         or req.data_sensitivity in self._secret_levels)
            else:
                leaks = not req.carries.isdisjoint(self._secret)
            if leaks:
                return self._egress
        return CLEAN

    def path(self):
        return [Local(self.params.check)]

    def reviewers(self):
        return self.params.reviewers.pool() if self.params.on_violation == "escalate" else None

    def attributes(self, req: Request) -> bool:
        return req.attested and req.identity_mode != "shared"
