"""Rego policies through regopy (rego-cpp), compiled once into a bundle.

The module is compiled once into a bundle with one entrypoint, `<package>/decision`, which
must be `{"allow": bool, "reasons": [ids]}`; each request only sets the input and runs that
plan (`query()` recompiles the module on every call: 30x slower when measured). The input is
flat, only the fields the module reads: regopy converts nested objects node by node, so
nesting doubled the input cost when measured. Resource attributes travel in the input rather
than in a data document: a resource missing from `data` would make a forbid undefined, which
in Rego means "does not apply" (fail open).

A rate window is declared as `rate_limits := {"<rule id>": {"key": ..., "window": ..., "gt": ...}}`.
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

_INPUT_REF = re.compile(r"\binput\s*(?:\.\s*(\w+)|\[\s*\"(\w+)\"\s*\])")
_COMMENTS = re.compile(r'"(?:\\.|[^"\\])*"|`[^`]*`|#[^\n]*')
_PACKAGE = re.compile(r"^\s*package\s+([\w.]+)", re.M)


def _code(text: str) -> str:
    # Blank out comments; keep strings, which may index the input (input["x"]).
    return _COMMENTS.sub(lambda m: m.group() if m.group()[0] in "\"`" else " ", text)


# Built-ins a decision must not depend on: the process environment (secrets leak into
# reasons), the network, the clock and randomness (same seed, same bytes).
_FORBIDDEN = re.compile(r"\b(opa\s*\.\s*runtime|http\s*\.\s*send|net\s*\.\s*lookup_ip_addr"
                        r"|time\s*\.\s*now_ns|rand\s*\.\s*intn|uuid\s*\.\s*rfc4122)\s*\(")
_FORBIDDEN_WHY = {
    "opa": "a policy may not read the process environment (decide on the request's input)",
    "http": "a policy may not reach the network", "net": "a policy may not reach the network",
    "time": "a decision may not depend on the wall clock (the simulated time is input.time)",
    "rand": "a decision may not be random (runs must be reproducible)",
    "uuid": "a decision may not be random (runs must be reproducible)"}


class RegoPolicy:
    """A Rego module compiled once; `evaluate` is pure, `observe` feeds the rate window."""

    def __init__(self, path: str | Path, resources: Iterable[Resource] = ()):
        del resources  # accepted for a uniform interface: resource attributes travel in the input
        self._regopy = require("rego")
        self.source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise PolicyError(f"{path}: {e}") from None
        code = _code(text)
        m = _PACKAGE.search(code)
        if m is None:
            raise PolicyError(f"{path}: no `package` line")
        package = m.group(1)
        for name in _FORBIDDEN.findall(code):
            raise PolicyError(f"{path}: {name.replace(' ', '')}() is not allowed: "
                              f"{_FORBIDDEN_WHY[name.replace(' ', '').split('.')[0]]}")
        self._entry = package.replace(".", "/") + "/decision"
        used = fields_used([a or b for a, b in _INPUT_REF.findall(code)], self.source)
        self._fields = [(f, FIELDS[f]) for f in used if f != RATE_FIELD]
        self._rate = RATE_FIELD in used
        try:
            build = self._regopy.Interpreter()
            build.add_module(Path(path).name, text)
            self._bundle = build.build(None, [self._entry])
            limits = self._query(build, f"data.{package}.rate_limits") or {}
        except (self._regopy.RegoError, PolicyError) as e:
            raise PolicyError(f"{path}: {e}") from None
        if not isinstance(limits, dict) or len(limits) > 1:
            raise PolicyError(f"{path}: rate_limits must map one rule id to {{key, window, gt}}")
        spec = next(iter(limits.values()), None)
        self._window = rate_window(spec, self._rate, self.source)
        self.windows = [self._window] if self._window is not None else []
        self._rego = self._regopy.Interpreter()
        self._rego.strict_built_in_errors = True  # a failing built-in is an error, not undefined
        self._input: Any = None

    @staticmethod
    def _query(interp: Any, query: str) -> Any:
        out = interp.query(query)
        text = str(out)  # read while `out` is alive: its nodes point into it
        if not out.ok():  # regopy shows only "<error>": say what failed and the usual cause
            raise PolicyError(f"{query} cannot be evaluated (a rule with two different values?)")
        return None if text == "undefined" else json.loads(text)["expressions"][0]

    def evaluate(self, req: Request) -> Decision:
        doc = {name: get(req) for name, get in self._fields}
        if self._rate:
            doc[RATE_FIELD] = self._window.exceeded(req)  # type: ignore[union-attr]
        try:
            # Keep the converted input referenced for as long as the interpreter may read it.
            self._input = self._regopy.Input(doc)
            self._rego.set_input(self._input)
            out = self._rego.query_bundle_entrypoint(self._bundle, self._entry)
            text = str(out)
            if not out.ok():
                raise RuntimeError(text)
            result = json.loads(text)["expressions"][0]
            allow, ids = result["allow"], tuple(result["reasons"])
            if not isinstance(allow, bool) or not all(isinstance(i, str) for i in ids):
                raise TypeError(f"decision must be {{allow: bool, reasons: [str]}}, got {result}")
        except Exception as e:  # an engine failure is a deny, never an allow
            return Decision(False, ("evaluation-error",), (f"{type(e).__name__}: {e}",))
        if allow:
            return Decision(True, ids)
        return Decision(False, ids or ("default-deny",))

    def observe(self, req: Request) -> None:
        if self._window is not None:
            self._window.observe(req)
