"""`human_approval`: actions that match an escalation rule wait for a human reviewer.

Everything else is allowed (on its own the model is a review gate, not an access control; put
it in `layered` behind one). The rule: a risk score above `risk_above`, a permission of weight
at least `weight_at_least`, or an argument the task did not declare (`unknown_args`). Reviewers
are a finite pool with a queue, a timeout and fatigue (controls.review, reviewers.py).
"""

from __future__ import annotations

from pydantic import Field

from simharness.controls.base import Control, ControlParams, Decision, Local, Request, register
from simharness.controls.review import ReviewParams
from simharness.units import Distribution

ESCALATE = Decision(False, ("needs-approval",), escalate=True)
AUTO = Decision(True, ("auto-approved",))


class ApprovalParams(ControlParams):
    risk_above: float | None = Field(default=0.8, ge=0, le=1, description=(
        "escalate when the action's risk score is above this (null: never on risk)"))
    weight_at_least: float | None = Field(default=None, ge=0, description=(
        "escalate permissions of at least this weight w(p) (null: never on weight)"))
    unknown_args: bool = Field(default=True, description=(
        "escalate an action with an argument value the task did not declare"))
    check: Distribution = 0.00005  # type: ignore[assignment]  # matching the rule, in-process
    reviewers: ReviewParams = ReviewParams()


@register
class HumanApproval(Control):
    model = "human_approval"
    description = "escalation rule (risk, weight, unknown argument) to a finite reviewer pool"
    Params = ApprovalParams
    params: ApprovalParams
    tool_audit = True  # every request passes the gate and is logged there

    def escalates(self, req: Request) -> bool:
        p = self.params
        # `not risk <= threshold`: a NaN score (a broken classifier) escalates
        return ((p.risk_above is not None and not req.risk <= p.risk_above)
                or (p.weight_at_least is not None
                    and self.world.weight.get(req.perm, 0.0) >= p.weight_at_least)
                or (p.unknown_args and bool(req.args_unknown)))

    def decide(self, req: Request) -> Decision:
        if self.is_quarantined(req):
            return Decision(False, ("identity-quarantined",))
        return ESCALATE if self.escalates(req) else AUTO

    def path(self):
        return [Local(self.params.check)]

    def reviewers(self):
        return self.params.reviewers.pool()

    def attributes(self, req: Request) -> bool:
        return req.attested and req.identity_mode != "shared"
