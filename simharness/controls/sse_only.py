"""`sse_only`: the role credential of static_iam plus a network proxy (security service edge).

The proxy sees traffic, not intent: destination, whether it is approved, bytes out, source.
Traffic that never crosses it (third-party platforms, outside attackers) is invisible to it.
"""

from __future__ import annotations

from pydantic import Field

from simharness.controls.base import Control, ControlParams, Decision, Request, Station, register
from simharness.controls.static_iam import role_check
from simharness.units import Distribution, Servers


class SSEParams(ControlParams):
    rtt: Distribution = 0.001  # type: ignore[assignment]
    # TLS-inspecting proxy: a few ms per request (illustrative, no public figure, docs/sources.md)
    inspect: Distribution = Field(  # type: ignore[assignment]
        default_factory=lambda: {"dist": "lognormal", "p50": "2ms", "p99": "10ms"})
    servers: Servers = float("inf")
    dlp_max_bytes: int = Field(default=1_000_000, ge=0)  # to external destinations
    block_unapproved: bool = True


@register
class SSEOnly(Control):
    model = "sse_only"
    description = "role credential + network proxy: unapproved destinations and DLP on egress"
    Params = SSEParams
    params: SSEParams
    standing = True

    def standing_grant(self, archetype: str):
        return self.world.roles[archetype]

    def visible(self, req: Request) -> bool:
        return req.platform == "first_party" and req.source == "agent"

    def decide(self, req: Request) -> Decision:
        denied = role_check(req, False)
        if denied is not None:
            return denied
        if not self.visible(req):
            return Decision(True, ("in-role", "not-inspected"))
        res = req.resource
        if self.params.block_unapproved and not res.approved:
            return Decision(False, ("destination-unapproved",))
        if res.external and req.bytes_out > self.params.dlp_max_bytes:
            return Decision(False, ("dlp-egress",))
        return Decision(True, ("in-role", "inspected"))

    def path(self):
        p = self.params
        return [Station("proxy", p.servers, p.rtt, p.inspect)]
