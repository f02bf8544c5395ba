"""`static_iam`: a long-lived role credential per identity, checked locally against the role."""

from __future__ import annotations

from simharness.controls.base import (
    Control,
    ControlParams,
    Decision,
    Local,
    Request,
    register,
)
from simharness.units import Distribution


class StaticIAMParams(ControlParams):
    # In-process policy evaluation by the cloud provider: cheap and constant.
    check: Distribution = 0.00005  # type: ignore[assignment]


def role_check(req: Request, quarantined: bool) -> Decision | None:
    """The credential-and-role part shared by static_iam and sse_only (None: passes)."""
    cred = req.credential
    if cred is None:
        return Decision(False, ("no-credential",))
    if quarantined:
        return Decision(False, ("identity-quarantined",))
    if cred.revoked is not None and req.time >= cred.revoked:
        return Decision(False, ("credential-revoked",))
    if req.time >= cred.expires:
        return Decision(False, ("credential-expired",))
    if req.perm not in cred.perms:
        return Decision(False, ("not-in-role",))
    return None


@register
class StaticIAM(Control):
    model = "static_iam"
    description = "long-lived role credential per identity; local role check; no expiry"
    Params = StaticIAMParams
    params: StaticIAMParams
    tool_audit = True
    standing = True

    def standing_grant(self, archetype: str):
        return self.world.roles[archetype]

    def decide(self, req: Request) -> Decision:
        return role_check(req, self.is_quarantined(req)) or Decision(True, ("in-role",))

    def path(self):
        return [Local(self.params.check)]

    def attributes(self, req: Request) -> bool:
        # Cloud audit logs name the identity: agent and task only with per-task identities.
        return req.attested and req.identity_mode == "per_task"
