"""`per_action_policy`: every action decided at request time by policy-as-code at a PDP.

Defaults: PDP service time lognormal p50 1 ms (OPA guidance: "on the order of 1 ms" for
microservice API authorization) with a p99 of 5 ms; timeout 200 ms and fail-closed (Envoy
ext_authz: default timeout 200 ms, `failure_mode_allow: false`) (docs/sources.md).

`engine: rules | cedar | rego` picks the policy engine; `policy:` its file (default: the shipped
agent policy for that engine; naming another engine's shipped file also means this engine's,
so `--set controls.per_action_policy.engine=cedar` works on the shipped profile).

`pdp.service_time: measured` times the real engine in-process instead of assuming a service
time: at construction the control evaluates a calibration set of requests drawn from the World
(`CALIBRATION_REQUESTS`, seeded) with `time.perf_counter_ns` around `evaluate` (median of 5
timings per request, so the OS preempting the simulator is not counted), and the PDP samples
its service time from those measurements (an empirical distribution). The figures are
in `measured_service_us`. Results then depend on the speed and load of the machine that ran
them, and differ between runs and machines even with the same seed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
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
from simharness.policy.engines import DEFAULT_POLICIES, load_policy, time_decisions, world_requests
from simharness.units import (
    Distribution,
    Duration,
    Empirical,
    PositiveDuration,
    QueueLimit,
    Servers,
)

DEFAULT_POLICY = DEFAULT_POLICIES["rules"]
CALIBRATION_REQUESTS = 300


class CacheParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    ttl: Duration = 0.0  # 0: no decision cache
    key: list[str] = ["identity", "tool", "action", "resource"]


class PDPParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    servers: Servers = 4  # .inf: no queue
    rtt: Distribution = 0.001  # type: ignore[assignment]
    # "measured": the engine's own evaluation time on this machine (see the module docstring)
    service_time: Literal["measured"] | Distribution = Field(  # type: ignore[call-overload]
        default_factory=lambda: {"dist": "lognormal", "p50": "1ms", "p99": "5ms"},
        union_mode="left_to_right")
    timeout: PositiveDuration = 0.2
    fail_mode: Literal["open", "closed"] = "closed"
    cache: CacheParams = CacheParams()
    max_queue: QueueLimit = Field(default=math.inf, description=(
        "requests that may wait for a server; more are rejected at once (fail_mode decides)"))
    on_timeout: Literal["keep_serving", "abandon"] = Field(default="keep_serving", description=(
        "a request that times out while queued: still served when its turn comes (most "
        "servers do not know the client left) or dropped unserved"))


class PolicyParams(ControlParams):
    engine: Literal["rules", "cedar", "rego"] = "rules"
    policy: str | None = None  # None: the engine's shipped agent policy
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
    params: PolicyParams
    tool_audit = True

    def __init__(self, name: str, params: dict, world: World):
        super().__init__(name, params, world)
        engine, policy = self.params.engine, self.params.policy
        if policy is None or policy in DEFAULT_POLICIES.values():
            policy = DEFAULT_POLICIES[engine]
        self.policy_path = resolve_policy_path(policy)
        self.policy = load_policy(engine, self.policy_path, world.resources.values())
        self.service_time = self.params.pdp.service_time
        #: p50/p99/mean of the measured evaluation time in microseconds (None: not measured)
        self.measured_service_us: dict[str, float] | None = None
        if self.service_time == "measured":
            self._measure()

    def _measure(self) -> None:
        """Time the engine on a calibration set; its samples become the PDP service time."""
        ns = time_decisions(self.policy, world_requests(self.world, CALIBRATION_REQUESTS))
        us = ns / 1e3
        self.measured_service_us = {"p50": float(np.percentile(us, 50)),
                                    "p99": float(np.percentile(us, 99)),
                                    "mean": float(us.mean()), "n": len(us)}
        self.service_time = Empirical(dist="empirical", samples=(ns / 1e9).tolist())

    def facts(self) -> dict[str, Any]:
        if self.measured_service_us is None:
            return {}
        return {"pdp_service_time": "measured", "engine": self.params.engine,
                "measured_service_us": self.measured_service_us}

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
        return [Station("pdp", p.servers, p.rtt, self.service_time, p.timeout, p.fail_mode,
                        p.cache.ttl, tuple(p.cache.key), p.max_queue, p.on_timeout)]

    def attributes(self, req: Request) -> bool:
        # The PDP decision log carries the task; the identity names the agent unless shared.
        return req.attested and req.identity_mode != "shared"


