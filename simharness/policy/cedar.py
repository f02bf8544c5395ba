"""Cedar policies through cedarpy, in the layout measured fastest here.

The policy set is parsed once. A request is principal `Identity::"<identity>"`, action
`Action::"<action>"`, resource `Resource::"<name>"` with dict UIDs (cheaper than parsing
surface strings); resources live in a prebuilt entity store (attributes name, sensitivity,
destination, external, approved, auth) and the per-request facts go in the context, only the
fields the policy reads (each costs about 2 us in cedarpy's request building). Fields that are
None (a token's holder when there is no token) are left out: Cedar has no null, and reading
an absent field is an evaluation error, hence a deny.

A policy's `@id("...")` annotation is its reason id. A rate window is declared on the policy
that reads `context.rate_exceeded`: `@rate_key("identity") @rate_window("10s") @rate_gt("20")`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from simharness.controls.base import Decision, Request
from simharness.policy.engines import FIELDS, RATE_FIELD, fields_used, rate_window, require
from simharness.policy.rules import PolicyError
from simharness.spec import Resource

_CONTEXT_REF = re.compile(r"\bcontext\s*(?:\.|\bhas\b)\s*(\w+)")
_STRINGS_AND_COMMENTS = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*')
_FLOATS = ("risk", "time")  # no floating point in Cedar


def _resource_entity(uid: str, r: Resource) -> dict[str, Any]:
    attrs = {"name": r.name, "sensitivity": r.sensitivity, "destination": r.destination,
             "external": r.external, "approved": r.approved, "auth": r.auth}
    return {"uid": {"type": "Resource", "id": uid}, "attrs": attrs, "parents": []}


class CedarPolicy:
    """A Cedar policy file compiled once; `evaluate` is pure, `observe` feeds the rate window."""

    def __init__(self, path: str | Path, resources: Iterable[Resource] = ()):
        self._cedar = require("cedar")
        self.source = str(path)
        try:
            text = Path(path).read_text()
            self._policies = self._cedar.PolicySet.from_str(text)
            meta = json.loads(self._cedar.policies_to_json_str(text))["staticPolicies"]
        except (OSError, ValueError) as e:
            raise PolicyError(f"{path}: {e}") from None
        code = _STRINGS_AND_COMMENTS.sub(" ", text)
        used = fields_used(_CONTEXT_REF.findall(code), self.source)
        floats = [f for f in used if f in _FLOATS]
        if floats:
            raise PolicyError(f"{path}: context {floats} are floats, which Cedar cannot compare")
        self._fields = [(f, FIELDS[f]) for f in used if f != RATE_FIELD]
        self._rate = RATE_FIELD in used
        rates = [{k.removeprefix("rate_"): v for k, v in p.get("annotations", {}).items()
                  if k in ("rate_key", "rate_window", "rate_gt")} for p in meta.values()]
        rates = [r for r in rates if r]
        if len(rates) > 1:
            raise PolicyError(f"{path}: one rate window per policy set is supported")
        self._window = rate_window(rates[0] if rates else None, self._rate, self.source)
        self.windows = [self._window] if self._window is not None else []
        # Resource entities: prebuilt for the World's resources, added when a new one shows up.
        self._uids: dict[str, list[tuple[Resource, dict[str, str]]]] = {}
        self._entities = self._cedar.Entities.from_json_str("[]")
        self._add_resources(list(resources))

    def _add_resources(self, resources: list[Resource]) -> None:
        new = []
        for r in resources:
            same_name = self._uids.setdefault(r.name, [])
            if any(known == r for known, _ in same_name):
                continue
            # A different resource under a known name gets its own entity id.
            uid = r.name if not same_name else f"{r.name}#{len(same_name)}"
            same_name.append((r, {"type": "Resource", "id": uid}))
            new.append(_resource_entity(uid, r))
        if new:
            self._entities = self._entities.with_added_json_str(json.dumps(new))

    def _resource_uid(self, r: Resource) -> dict[str, str]:
        for known, uid in self._uids.get(r.name, ()):
            if known is r or known == r:
                return uid
        self._add_resources([r])
        return self._resource_uid(r)

    def evaluate(self, req: Request) -> Decision:
        context = {name: v for name, get in self._fields if (v := get(req)) is not None}
        if self._rate:
            context[RATE_FIELD] = self._window.exceeded(req)  # type: ignore[union-attr]
        try:
            result = self._cedar.is_authorized(
                {"principal": {"type": "Identity", "id": req.identity},
                 "action": {"type": "Action", "id": req.action},
                 "resource": self._resource_uid(req.resource), "context": context},
                self._policies, self._entities)
            diag = result.diagnostics
            names = diag.id_annotations_by_reason
            ids = tuple(names.get(p, p) for p in diag.reasons)
            allowed, errors = result.allowed, tuple(diag.errors)
        except Exception as e:  # an engine failure is a deny, never an allow
            return Decision(False, ("evaluation-error",), (f"{type(e).__name__}: {e}",))
        if errors:
            # Cedar skips a policy that errors: an erroring forbid must not let a permit through.
            return Decision(False, (ids if not allowed and ids else ("evaluation-error",)), errors)
        if allowed:
            return Decision(True, ids)
        return Decision(False, ids or ("default-deny",))

    def observe(self, req: Request) -> None:
        if self._window is not None:
            self._window.observe(req)
