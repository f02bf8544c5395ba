"""`per_action_policy`: every action decided at request time by policy-as-code at a PDP.

Defaults: PDP service time lognormal p50 1 ms (OPA guidance: "on the order of 1 ms" for
microservice API authorization) with a p99 of 5 ms; timeout 200 ms and fail-closed (Envoy
ext_authz: default timeout 200 ms, `failure_mode_allow: false`) (REFERENCE.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from simharness.controls.base import (
    Control,
    ControlParams,
    Decision,
    Ledger,
    Request,
    Station,
    World,
    register,
)
from simharness.units import Distribution, Duration

DEFAULT_POLICY = "policies/agent_rules.yaml"


class CacheParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    ttl: Duration = 0.0  # 0: no decision cache
    key: list[str] = ["identity", "tool", "action", "resource"]


class PDPParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    servers: float = Field(default=4, gt=0)  # .inf: no queue
    rtt: Distribution = 0.001  # type: ignore[assignment]
    service_time: Distribution = Field(  # type: ignore[assignment]
        default_factory=lambda: {"dist": "lognormal", "p50": "1ms", "p99": "5ms"})
    timeout: Duration = 0.2
    fail_mode: Literal["open", "closed"] = "closed"
    cache: CacheParams = CacheParams()


class PolicyParams(ControlParams):
    engine: Literal["rules"] = "rules"
    policy: str = DEFAULT_POLICY
    capability_ttl: Duration = 0.0
    pdp: PDPParams = PDPParams()


def resolve_policy_path(path: str) -> Path:
    """A policy file as given, else relative to the packaged `controls/` folder."""
    p = Path(path)
    if p.is_file():
        return p
    from simharness.loader import data_dir

    packaged = data_dir("controls") / path
    if packaged.is_file():
        return packaged
    raise FileNotFoundError(f"policy file {path!r} not found (looked in the working directory "
                            f"and {data_dir('controls')})")


@register
class PerActionPolicy(Control):
    model = "per_action_policy"
    description = "policy-as-code at a PDP on every action; no standing grant"
    Params = PolicyParams
    tool_audit = True

    def __init__(self, name: str, params: dict, world: World):
        super().__init__(name, params, world)
        from simharness.policy.rules import load_rules

        self.policy = load_rules(resolve_policy_path(self.params.policy))

    def decide(self, req: Request) -> Decision:
        if self.is_quarantined(req):
            return Decision(False, ("identity-quarantined",))
        return self.policy.evaluate(req)

    def observe(self, req: Request, decision: Decision) -> None:
        self.policy.observe(req)

    def on_allow(self, req: Request, ledger: Ledger, now: float) -> None:
        ttl = self.params.capability_ttl
        if ttl > 0:
            ledger.issue(req.identity, frozenset([req.perm]), now, ttl, kind="capability",
                         task_id=req.task_id)

    def path(self):
        p = self.params.pdp
        return [Station("pdp", p.servers, p.rtt, p.service_time, p.timeout, p.fail_mode,
                        p.cache.ttl, tuple(p.cache.key))]

    def attributes(self, req: Request) -> bool:
        # The PDP decision log carries the task; the identity names the agent unless shared.
        return req.attested and req.identity_mode != "shared"


