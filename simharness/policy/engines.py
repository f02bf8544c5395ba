"""Policy engines behind one interface: the built-in rules, Cedar (cedarpy) and Rego (regopy).

Every engine answers `evaluate(req) -> Decision` (pure) and `observe(req)` (feeds rate windows),
decides the shipped policy identically, and names the deciding rules by the same ids.

Cedar and Rego see a request as flat fields: the rules attribute `a.b` is the field `a_b`
(`task.active` -> `task_active`, `resource.approved` -> `resource_approved`), plus
`rate_exceeded`. Rate windows are state, which neither engine keeps: the adapter counts the
window in Python (`RateWindow`) and passes the verdict as `rate_exceeded`.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from simharness.controls.base import Credential, Decision, Request
from simharness.policy.rules import ATTRIBUTES, PolicyError, RateWindow, _rate_window, load_rules
from simharness.spec import Resource

ENGINES = ("rules", "cedar", "rego")
#: the shipped agent policy for each engine (relative to the packaged `controls/` folder)
DEFAULT_POLICIES = {"rules": "policies/agent_rules.yaml", "cedar": "policies/agent.cedar",
                    "rego": "policies/agent.rego"}
_MODULES = {"cedar": "cedarpy", "rego": "regopy"}

def _whole_number(v: Any) -> Any:
    # Cedar and Rego compare whole numbers; a float argument (an amount) is rounded.
    return round(v) if isinstance(v, float) else v


#: the request as flat fields for the real engines (rules attribute `a.b` -> field `a_b`), and
#: the call's arguments as two records: `args` (values) and `args_known` (name -> declared?),
#: so rules `args.recipient.known` is Cedar `context.args_known.recipient` and Rego
#: `input.args_known.recipient`.
FIELDS: dict[str, Callable[[Request], Any]] = {
    **{k.replace(".", "_"): get for k, get in ATTRIBUTES.items()},
    "args": lambda r: {k: _whole_number(v) for k, v in r.args.items()},
    "args_known": lambda r: {k: k not in r.args_unknown for k in r.args},
}
RATE_FIELD = "rate_exceeded"


class PolicyEngine(Protocol):
    def evaluate(self, req: Request) -> Decision: ...

    def observe(self, req: Request) -> None: ...


class MissingExtra(ImportError, ValueError):
    """An engine whose optional dependency is not installed (a ValueError too, so parameter
    validation reports it as a problem instead of crashing)."""


def require(engine: str) -> ModuleType:
    """The engine's Python package, or MissingExtra naming the extra to install."""
    try:
        return importlib.import_module(_MODULES[engine])
    except ImportError:
        raise MissingExtra(f"engine {engine!r} needs the optional extra: "
                           f"pip install 'simharness[{engine}]'") from None


def fields_used(names: Iterable[str], source: str) -> list[str]:
    """Check the fields a policy reads; an unknown one would silently never match (fail open
    for a forbid), so it is an error here."""
    used = sorted(set(names))
    unknown = [n for n in used if n not in FIELDS and n != RATE_FIELD]
    if unknown:
        import difflib

        hints = [f"{n!r}" + (f" (did you mean {c[0]!r}?)"
                             if (c := difflib.get_close_matches(n, list(FIELDS), n=1)) else "")
                 for n in unknown]
        raise PolicyError(f"{source}: unknown request fields {', '.join(hints)}")
    return used


def rate_window(spec: dict[str, Any] | None, uses_rate: bool, source: str) -> RateWindow | None:
    """The one sliding window a policy declares (`{key, window, gt}`), checked like the rules'."""
    if uses_rate and spec is None:
        raise PolicyError(f"{source}: reads {RATE_FIELD} but declares no rate window")
    return None if spec is None else _rate_window(spec, f"{source}: rate")


def load_policy(engine: str, path: str | Path, resources: Iterable[Resource] = ()) -> PolicyEngine:
    """Compile the policy file once for `engine` (rules | cedar | rego). `resources` pre-loads
    the entity store (Cedar) or data document (Rego); others are added on first sight."""
    if engine == "rules":
        return load_rules(path)
    if engine == "cedar":
        from simharness.policy.cedar import CedarPolicy

        return CedarPolicy(path, resources)
    if engine == "rego":
        from simharness.policy.rego import RegoPolicy

        return RegoPolicy(path, resources)
    raise ValueError(f"unknown policy engine {engine!r}; known: {', '.join(ENGINES)}")


def time_decisions(policy: PolicyEngine, requests: Sequence[Request], repeat: int = 5,
                   warmup: int = 50) -> np.ndarray:
    """Nanoseconds `evaluate` takes on each request, in-process: the median of `repeat` timings
    per request, so that the OS preempting this process is not counted as evaluation time."""
    for r in requests[:warmup]:
        policy.evaluate(r)
    out = np.empty((repeat, len(requests)), dtype=np.int64)
    clock, evaluate = time.perf_counter_ns, policy.evaluate
    for k in range(repeat):
        row = out[k]
        for i, r in enumerate(requests):
            t0 = clock()
            evaluate(r)
            row[i] = clock() - t0
    return np.median(out, axis=0)


def sample_requests(n: int, resources: Sequence[Resource], seed: int = 0,
                    identities: Sequence[str] = ("agent-0", "agent-1", "agent-2"),
                    perms: Sequence[tuple[str, str, str]] | None = None,
                    roles: dict[str, frozenset] | None = None) -> list[Request]:
    """Random requests in time order covering both sides of every condition of the shipped
    policy (including bursts past the rate limit); for calibration and differential tests.

    `perms` (tool, action, resource) default to one tool per resource; `roles` (identity ->
    perms), when given, decide `entitled` as the directory would.
    """
    rng = np.random.default_rng(seed)
    by_name = {r.name: r for r in resources}
    if perms is None:
        perms = [(f"{r.name}_api", a, r.name) for r in resources for a in ("read", "write", "send")]
    reqs: list[Request] = []
    t = 0.0
    for i in range(n):
        # One bursty stretch in four so the rate window goes both ways.
        t += float(rng.exponential(0.05 if (i // 200) % 4 == 1 else 1.0))
        ident = identities[int(rng.integers(len(identities)))]
        perm = perms[int(rng.integers(len(perms)))]
        u = rng.random(12)
        cred = None
        if u[0] < 0.5:
            holder = ident if u[1] < 0.7 else "someone-else"
            cred = Credential(i, holder, frozenset([perm]), 1.0, t, task_id=int(u[2] < 0.5) - 1)
        entitled = bool(perm in roles.get(ident, ())) if roles is not None else bool(u[3] < 0.85)
        # A third of the calls carry arguments; half of those name a recipient, which the task
        # did not declare one time in three (the shipped recipient rule goes both ways).
        args: dict[str, Any] = {}
        unknown: set[str] = set()
        if u[10] < 1 / 3:
            args["amount"] = float(rng.choice([10.0, 80.5, 900.0]))
            if u[11] < 0.5:
                args["recipient"] = f"recipient:t{i}"
                if rng.random() < 1 / 3:
                    unknown.add("recipient")
        reqs.append(Request(
            time=t, identity=ident, identity_mode="per_agent", attested=bool(u[4] < 0.85),
            source="agent", agent=ident, archetype=ident, platform="first_party", tool=perm[0],
            action=perm[1], resource=by_name[perm[2]], perm=perm,
            bytes_out=int(rng.choice([0, 512, 1_000_000, 1_000_001, 5_000_000])),
            data_sensitivity=None, task_id=i, task_type="task", task_active=bool(u[5] < 0.9),
            in_scope=bool(u[6] < 0.85), entitled=entitled, chain_depth=int(rng.choice([0, 0, 1, 2])),
            chain_origin=ident, origin_permits=bool(u[7] < 0.8),
            token_mode=("none", "exchange", "passthrough")[int(u[8] * 3)], credential=cred,
            risk=float(u[9]), args=args, args_unknown=frozenset(unknown)))
    return reqs


def world_requests(world: Any, n: int = 300, seed: int = 0) -> list[Request]:
    """A calibration set drawn from a World: its identities, resources, tools and roles."""
    identities = [f"{name}-0" for name in world.roles]
    roles = {f"{name}-0": perms for name, perms in world.roles.items()}
    perms = sorted(world.all_perms) or None
    return sample_requests(n, list(world.resources.values()), seed, identities, perms, roles)
