"""The built-in policy-as-code: a YAML rules file compiled once into closures and indexes.

Semantics follow Cedar: default deny, a matching deny (forbid) overrides any allow (permit), and
an evaluation error never becomes an allow. Reasons are the ids of the rules that decided.

```yaml
policy_version: 1
rules:
  - id: permit-planned
    effect: allow
    when: {attested: true, entitled: true, in_scope: true, task.active: true}
  - id: forbid-unapproved-egress
    effect: deny
    when: {resource.approved: false}
  - id: forbid-burst
    effect: deny
    when: {rate: {key: identity, window: 10s, gt: 20}}
```
A condition is `attribute: literal` (equality) or `attribute: {op: value}` with op in
eq, ne, in, not_in, lt, le, gt, ge.

Arguments of the call are `args.<name>` (the value) and `args.<name>.known` (whether the task
declared that value when it began). A condition on an argument the call does not carry never
holds, so `args.recipient.known: false` applies only to calls that name a recipient.
"""

from __future__ import annotations

import math
import operator
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simharness.controls.base import Decision, Request
from simharness.units import parse_duration

Predicate = Callable[[Request], bool]


def _cred_attr(fn: Callable[[Any, Request], Any]) -> Callable[[Request], Any]:
    def get(r: Request) -> Any:
        c = r.credential
        return None if c is None else fn(c, r)

    return get


#: every attribute a rule may test, and how to read it from a Request
ATTRIBUTES: dict[str, Callable[[Request], Any]] = {
    "identity": operator.attrgetter("identity"),
    "identity_mode": operator.attrgetter("identity_mode"),
    "attested": operator.attrgetter("attested"),
    "source": operator.attrgetter("source"),
    "agent": operator.attrgetter("agent"),
    "archetype": operator.attrgetter("archetype"),
    "platform": operator.attrgetter("platform"),
    "tool": operator.attrgetter("tool"),
    "action": operator.attrgetter("action"),
    "resource": operator.attrgetter("resource.name"),
    "resource.name": operator.attrgetter("resource.name"),
    "resource.sensitivity": operator.attrgetter("resource.sensitivity"),
    "resource.destination": operator.attrgetter("resource.destination"),
    "resource.external": operator.attrgetter("resource.external"),
    "resource.approved": operator.attrgetter("resource.approved"),
    "resource.auth": operator.attrgetter("resource.auth"),
    "bytes_out": operator.attrgetter("bytes_out"),
    "data_sensitivity": operator.attrgetter("data_sensitivity"),
    "task.id": operator.attrgetter("task_id"),
    "task.type": operator.attrgetter("task_type"),
    "task.active": operator.attrgetter("task_active"),
    "in_scope": operator.attrgetter("in_scope"),
    "entitled": operator.attrgetter("entitled"),
    "chain.depth": operator.attrgetter("chain_depth"),
    "chain.origin": operator.attrgetter("chain_origin"),
    "chain.origin_permits": operator.attrgetter("origin_permits"),
    "chain.token_mode": operator.attrgetter("token_mode"),
    "token.present": lambda r: r.credential is not None,
    "token.holder_matches": _cred_attr(lambda c, r: c.holder == r.identity),
    "token.task_scoped": _cred_attr(lambda c, r: c.task_id >= 0),
    "risk": operator.attrgetter("risk"),
    "time": operator.attrgetter("time"),
}

class PolicyError(ValueError):
    """A rules file that cannot be compiled (message names the rule and field)."""


class RateWindow:
    """Requests per key in a sliding time window (state read by decide, written by observe)."""

    __slots__ = ("key", "window", "limit", "_times")

    def __init__(self, key: Callable[[Request], Any], window: float, limit: int):
        self.key, self.window, self.limit = key, window, limit
        self._times: dict[Any, deque[float]] = {}

    def exceeded(self, r: Request) -> bool:
        q = self._times.get(self.key(r))
        if not q:
            return False
        lo = r.time - self.window
        # Count only the timestamps inside the window without mutating (decide stays pure).
        n = len(q)
        for t in q:
            if t > lo:
                break
            n -= 1
        return n > self.limit

    def observe(self, r: Request) -> None:
        key = self.key(r)
        q = self._times.get(key)
        if q is None:
            q = self._times[key] = deque()
        q.append(r.time)
        lo = r.time - self.window
        while q and q[0] <= lo:
            q.popleft()


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    effect: str  # allow | deny
    stateful: bool  # reads a rate window (run state), not only the request
    tools: frozenset[str] | None  # static pre-filter: the rule only applies to these tools
    actions: frozenset[str] | None
    matches: Predicate  # the whole `when:`, compiled into one short-circuiting lambda
    condition: str  # its Python source over `r` (names bound in `names`), for fast paths
    names: dict[str, Any]


class Policy:
    """A compiled rules file. `evaluate` is pure; `observe` feeds rate windows."""

    def __init__(self, rules: list[Rule], windows: list[RateWindow], default: str = "deny",
                 source: str = "<rules>"):
        self.rules = rules
        self.windows = windows
        self.default_allow = default == "allow"
        self.source = source
        self._index: dict[tuple[str, str], tuple[tuple[Rule, ...], tuple[Rule, ...]]] = {}
        self._fast: dict[tuple[str, str], Callable[[Request], tuple[bool, tuple]]] = {}
        # Decisions are immutable: one shared object per outcome instead of one per request.
        self._decisions: dict[tuple[bool, tuple], Decision] = {}
        self._default_reasons = ("default-allow",) if self.default_allow else ("default-deny",)

    def _rules_for(self, tool: str, action: str) -> tuple[tuple[Rule, ...], tuple[Rule, ...]]:
        key = (tool, action)
        hit = self._index.get(key)
        if hit is None:
            applicable = [r for r in self.rules
                          if (r.tools is None or tool in r.tools)
                          and (r.actions is None or action in r.actions)]
            hit = (tuple(r for r in applicable if r.effect == "deny"),
                   tuple(r for r in applicable if r.effect == "allow"))
            self._index[key] = hit
        return hit

    def evaluate(self, req: Request) -> Decision:
        fast = self._fast.get((req.tool, req.action))
        if fast is None:
            fast = self._fast[(req.tool, req.action)] = self._compile_fast(req.tool, req.action)
        try:
            key = fast(req)
        except Exception:  # some rule raised: the careful path says which, and never allows
            return self.evaluate_each(req)
        decision = self._decisions.get(key)
        if decision is None:
            allow, ids = key
            decision = self._decisions[key] = Decision(allow, ids or self._default_reasons)
        return decision

    def _compile_fast(self, tool: str, action: str) -> Callable[[Request], tuple[bool, tuple]]:
        """The rules that apply to (tool, action) as one generated function returning
        (allow, ids of the deciding rules): every condition inline, no call per rule. Rule
        ids and values are bound as names, never pasted into the source."""
        denies, allows = self._rules_for(tool, action)
        names: dict[str, Any] = {"__builtins__": {}}
        lines = ["def fast(r):", "    d = ()"]
        for k, rule in enumerate(denies):
            names.update(rule.names)
            names[f"d{k}"] = rule.id
            lines.append(f"    if {rule.condition}: d += (d{k},)")
        lines += ["    if d: return False, d", "    a = ()"]
        for k, rule in enumerate(allows):
            names.update(rule.names)
            names[f"a{k}"] = rule.id
            lines.append(f"    if {rule.condition}: a += (a{k},)")
        lines += ["    if a: return True, a", f"    return {self.default_allow!r}, ()"]
        exec("\n".join(lines), names)  # noqa: S102 - source built from our own templates
        return names["fast"]

    def evaluate_each(self, req: Request) -> Decision:
        """Rule by rule, recording evaluation errors (the path taken when a rule raises)."""
        denies, allows = self._rules_for(req.tool, req.action)
        errors: list[str] = []
        deny_ids: list[str] = []
        for rule in denies:
            try:
                if rule.matches(req):
                    deny_ids.append(rule.id)
            except Exception as e:  # an erroring forbid still forbids: fail safe
                errors.append(f"{rule.id}: {type(e).__name__}: {e}")
        if deny_ids or errors:
            return Decision(False, tuple(deny_ids) or ("evaluation-error",), tuple(errors))
        allow_ids = []
        for rule in allows:
            try:
                if rule.matches(req):
                    allow_ids.append(rule.id)
            except Exception as e:  # an erroring permit never becomes an allow
                errors.append(f"{rule.id}: {type(e).__name__}: {e}")
        if allow_ids:
            return Decision(True, tuple(allow_ids), tuple(errors))
        if errors:
            return Decision(False, ("evaluation-error",), tuple(errors))
        return Decision(self.default_allow, self._default_reasons)

    def observe(self, req: Request) -> None:
        for w in self.windows:
            w.observe(req)


#: each attribute as a Python expression over the request `r` (the source of generated code;
#: nothing from a policy file is ever pasted into code, its values are bound as names).
EXPRESSIONS: dict[str, str] = {
    "identity": "r.identity", "identity_mode": "r.identity_mode", "attested": "r.attested",
    "source": "r.source", "agent": "r.agent", "archetype": "r.archetype",
    "platform": "r.platform", "tool": "r.tool", "action": "r.action",
    "resource": "r.resource.name", "resource.name": "r.resource.name",
    "resource.sensitivity": "r.resource.sensitivity",
    "resource.destination": "r.resource.destination",
    "resource.external": "r.resource.external", "resource.approved": "r.resource.approved",
    "resource.auth": "r.resource.auth", "bytes_out": "r.bytes_out",
    "data_sensitivity": "r.data_sensitivity", "task.id": "r.task_id", "task.type": "r.task_type",
    "task.active": "r.task_active", "in_scope": "r.in_scope", "entitled": "r.entitled",
    "chain.depth": "r.chain_depth", "chain.origin": "r.chain_origin",
    "chain.origin_permits": "r.origin_permits", "chain.token_mode": "r.token_mode",
    "token.present": "(r.credential is not None)",
    "token.holder_matches": "(None if r.credential is None else r.credential.holder == r.identity)",
    "token.task_scoped": "(None if r.credential is None else r.credential.task_id >= 0)",
    "risk": "r.risk", "time": "r.time",
}
assert EXPRESSIONS.keys() == ATTRIBUTES.keys()

_OP_SYNTAX = {"eq": "==", "ne": "!=", "in": "in", "not_in": "not in", "lt": "<", "le": "<=",
              "gt": ">", "ge": ">="}


ARG_ATTRIBUTE = re.compile(r"^args\.([A-Za-z_][A-Za-z0-9_]*)(\.known)?$")


def _expression(attr: str, bind: Callable[[Any], str]) -> tuple[str | None, str | None]:
    """A rules attribute as a Python expression over the request `r` (None: unknown), and for
    an argument the guard that it is present (a condition on an absent argument never holds)."""
    m = ARG_ATTRIBUTE.match(attr)
    if m is None:
        return EXPRESSIONS.get(attr), None
    name = bind(m.group(1))
    guard = f"{name} in r.args"
    if m.group(2):
        return f"({name} not in r.args_unknown)", guard
    return f"r.args[{name}]", guard


def _condition(attr: str, cond: Any, where: str, bind: Callable[[Any], str]) -> list[str]:
    """Python source of one `attribute: condition` entry (values bound through `bind`)."""
    expr, guard = _expression(attr, bind)
    if expr is None:
        import difflib

        close = difflib.get_close_matches(attr, list(ATTRIBUTES), n=1)
        hint = (f" (did you mean {close[0]!r}?)" if close
                else f"; known: {', '.join(ATTRIBUTES)}, args.<name>, args.<name>.known")
        raise PolicyError(f"{where}: unknown attribute {attr!r}{hint}")
    if not isinstance(cond, dict):
        parts = [f"({expr} == {bind(cond)})"]
    else:
        parts = []
        for op, value in cond.items():
            if op not in _OP_SYNTAX:
                raise PolicyError(f"{where}.{attr}: unknown operator {op!r}; known: {', '.join(_OP_SYNTAX)}")
            if op in ("in", "not_in"):
                if not isinstance(value, list):
                    raise PolicyError(f"{where}.{attr}.{op}: expected a list")
                value = frozenset(value)
            parts.append(f"({expr} {_OP_SYNTAX[op]} {bind(value)})")
    return [f"({guard} and {p})" for p in parts] if guard else parts


def _compile_when(when: dict[str, Any], where: str, prefix: str
                  ) -> tuple[str, dict[str, Any], list[RateWindow]]:
    """A rule's whole `when:` as one Python expression over the request `r`: a conjunction of
    inline attribute reads and comparisons, short-circuiting, with no call per condition (the
    per-action hot path). Returns it, its bound names (prefixed, so that the rules of a policy
    can be combined into one function) and the rate windows it reads."""
    names: dict[str, Any] = {}
    windows: list[RateWindow] = []

    def bind(value: Any) -> str:
        name = f"{prefix}v{len(names)}"
        names[name] = value
        return name

    parts: list[str] = []
    for attr, cond in when.items():
        if attr == "rate":
            w = _rate_window(cond, f"{where}.rate")
            windows.append(w)
            parts.append(f"{bind(w.exceeded)}(r)")
        else:
            parts += _condition(attr, cond, where, bind)
    return (" and ".join(parts) if parts else "True"), names, windows


def _static_filter(when: dict[str, Any], attr: str) -> frozenset[str] | None:
    cond = when.get(attr)
    if cond is None:
        return None
    if isinstance(cond, str):
        return frozenset([cond])
    if isinstance(cond, dict) and set(cond) == {"in"} and isinstance(cond["in"], list):
        return frozenset(cond["in"])
    return None


# --------------------------------------------------------------------------- checking
# What compile_rules would otherwise turn into a rule that silently never fires (a string where
# a boolean is compared), an evaluation error on every request (`gt: "1MB"`), or a traceback
# (`in: [[a, b]]`, `gt: .inf`, `rules: 5`): every problem, located by its path in the file.

_BOOLEAN = frozenset({"attested", "resource.external", "resource.approved", "task.active",
                      "in_scope", "entitled", "chain.origin_permits", "token.present",
                      "token.holder_matches", "token.task_scoped"})
_NUMERIC = frozenset({"bytes_out", "chain.depth", "risk", "time", "task.id"})
_ORDERING = ("lt", "le", "gt", "ge")


def _kind(attr: str) -> str:
    if attr in _BOOLEAN or (attr.startswith("args.") and attr.endswith(".known")):
        return "boolean"
    if attr in _NUMERIC:
        return "number"
    return "any" if attr.startswith("args.") else "text"


def _value_problem(kind: str, value: Any) -> str | None:
    """Why `value` can never equal an attribute of this kind (None: it can)."""
    if value is None:
        return None  # absent attributes (args, a missing token) read as null
    if isinstance(value, list | dict | set):
        return f"expected a single value, got {'a list' if isinstance(value, list) else 'a mapping'}"
    if kind == "boolean" and not isinstance(value, bool):
        return f"expected true or false, got {value!r}" + (
            " (a quoted string)" if isinstance(value, str) else "")
    if kind == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return f"expected a number, got {value!r}"
    if kind == "number" and value != value:
        return "expected a number, got NaN"
    if kind == "text" and not isinstance(value, str):
        return f"expected text, got {value!r} (quote it)"
    return None


def rules_problems(data: Any) -> list[tuple[tuple[Any, ...], str]]:
    """Every problem of a parsed rules document as (path in the file, message)."""
    out: list[tuple[tuple[Any, ...], str]] = []
    if not isinstance(data, dict):
        return [((), "expected a mapping with `rules:`")]
    for key in sorted(set(data) - {"policy_version", "description", "default", "rules"}, key=str):
        out.append(((key,), "unknown key; known: policy_version, description, default, rules"))
    if data.get("default", "deny") not in ("deny", "allow"):
        out.append((("default",), "must be deny or allow"))
    rules = data.get("rules")
    if rules is None:
        return out
    if not isinstance(rules, list):
        return [*out, (("rules",), "expected a list of rules (id, effect, when)")]
    for i, rule in enumerate(rules):
        at: tuple[Any, ...] = ("rules", i)
        if not isinstance(rule, dict):
            out.append((at, "expected a mapping with id, effect, when"))
            continue
        for key in sorted(set(rule) - {"id", "effect", "when", "description"}, key=str):
            out.append(((*at, key), "unknown key; known: id, effect, when, description"))
        if not isinstance(rule.get("id", ""), str | int):
            out.append(((*at, "id"), "expected a name"))
        if rule.get("effect") not in ("allow", "deny"):
            out.append(((*at, "effect"), f"must be allow or deny, got {rule.get('effect')!r}"))
        when = rule.get("when") or {}
        if not isinstance(when, dict):
            out.append(((*at, "when"), "expected a mapping of attribute: condition"))
            continue
        for attr, cond in when.items():
            out += _condition_problems((*at, "when", attr), str(attr), cond)
    return out


def _condition_problems(at: tuple[Any, ...], attr: str, cond: Any
                        ) -> list[tuple[tuple[Any, ...], str]]:
    if attr == "rate":
        return _rate_problems(at, cond)
    if attr not in ATTRIBUTES and not ARG_ATTRIBUTE.match(attr):
        return []  # compile_rules names it with a "did you mean"
    kind = _kind(attr)
    if not isinstance(cond, dict):
        why = _value_problem(kind, cond)
        return [(at, why)] if why else []
    out = []
    for op, value in cond.items():
        where = (*at, op)
        if op not in _OP_SYNTAX:
            continue  # compile_rules names it
        if op in ("in", "not_in"):
            if not isinstance(value, list):
                out.append((where, "expected a list of values"))
                continue
            out += [((*where, j), why) for j, v in enumerate(value)
                    if (why := _value_problem(kind, v))]
        elif op in _ORDERING:
            # Text attributes order as text; a mismatch there stays an evaluation error (deny),
            # which the fault-injection tests use to exercise the runtime guard.
            if kind == "text":
                continue
            if kind == "boolean" or isinstance(value, bool) or not isinstance(
                    value, int | float) or not math.isfinite(value):
                out.append((where, f"{op} compares numbers: expected a finite number, got "
                                   f"{value!r}" + (f" ({attr} is {kind})" if kind != "any"
                                                   else "")))
        elif why := _value_problem(kind, value):
            out.append((where, why))
    return out


def _rate_problems(at: tuple[Any, ...], cond: Any) -> list[tuple[tuple[Any, ...], str]]:
    if not isinstance(cond, dict) or set(cond) - {"key", "window", "gt"} or "gt" not in cond:
        return [(at, "expected {key: attribute, window: duration, gt: count}")]
    out = []
    gt = cond["gt"]
    if isinstance(gt, bool) or not isinstance(gt, int) or gt < 0:
        out.append(((*at, "gt"), f"expected a whole number of requests >= 0, got {gt!r}"))
    if cond.get("key", "identity") not in ATTRIBUTES:
        out.append(((*at, "key"), f"unknown attribute {cond.get('key')!r}"))
    try:
        window = parse_duration(cond.get("window", "60s"))
        if not 0 < window < math.inf:
            out.append(((*at, "window"), "expected a finite duration > 0"))
    except ValueError as e:
        out.append(((*at, "window"), str(e)))
    return out


def _located(problems: list[tuple[tuple[Any, ...], str]], source: str,
             marks: dict[tuple[Any, ...], tuple[int, int]] | None) -> str:
    """One `file:line:col: path: message` line per problem (the nearest known position)."""
    lines = []
    for path, message in problems:
        known = next((path[:n] for n in range(len(path), -1, -1) if path[:n] in (marks or {})),
                     None)
        where = source if known is None or marks is None else "{}:{}:{}".format(
            source, *marks[known])
        lines.append(f"{where}: {'.'.join(map(str, path)) or '(top)'}: {message}")
    return "\n".join(lines)


def compile_rules(data: dict[str, Any], source: str = "<rules>",
                  marks: dict[tuple[Any, ...], tuple[int, int]] | None = None) -> Policy:
    """Compile a parsed rules document into a Policy (`marks`: positions for messages)."""
    if problems := rules_problems(data):
        raise PolicyError(_located(problems, source, marks))
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: expected a mapping with `rules:`")
    unknown = set(data) - {"policy_version", "description", "default", "rules"}
    if unknown:
        raise PolicyError(f"{source}: unknown keys {sorted(unknown)}")
    default = data.get("default", "deny")
    if default not in ("deny", "allow"):
        raise PolicyError(f"{source}: default must be deny or allow")
    parsed: list[tuple] = []
    windows: list[RateWindow] = []
    seen: set[str] = set()
    for i, raw in enumerate(data.get("rules") or []):
        where = f"{source}: rules.{i}"
        if not isinstance(raw, dict):
            raise PolicyError(f"{where}: expected a mapping with id, effect, when")
        extra = set(raw) - {"id", "effect", "when", "description"}
        if extra:
            raise PolicyError(f"{where}: unknown keys {sorted(extra)}")
        rid = str(raw.get("id") or f"rule-{i}")
        if rid in seen:
            raise PolicyError(f"{where}: duplicate rule id {rid!r}")
        seen.add(rid)
        effect = raw.get("effect")
        if effect not in ("allow", "deny"):
            raise PolicyError(f"{where}.effect: must be allow or deny, got {effect!r}")
        when = raw.get("when") or {}
        if not isinstance(when, dict):
            raise PolicyError(f"{where}.when: expected a mapping of attribute: condition")
        condition, names, rule_windows = _compile_when(when, f"{where}.when", f"r{i}_")
        windows += rule_windows
        parsed.append((rid, effect, bool(rule_windows), _static_filter(when, "tool"),
                       _static_filter(when, "action"), condition, names))
    # One compile for every rule's predicate (a compile per rule costs more than the rest).
    namespace: dict[str, Any] = {"__builtins__": {}}
    for p in parsed:
        namespace.update(p[6])
    exec("\n".join(f"def m{i}(r): return {p[5]}" for i, p in enumerate(parsed)),  # noqa: S102
         namespace)
    rules = [Rule(rid, effect, stateful, tools, actions, namespace[f"m{i}"], condition, names)
             for i, (rid, effect, stateful, tools, actions, condition, names) in enumerate(parsed)]
    return Policy(rules, windows, default, source)


def _rate_window(cond: Any, where: str) -> RateWindow:
    if not isinstance(cond, dict) or set(cond) - {"key", "window", "gt"} or "gt" not in cond:
        raise PolicyError(f"{where}: expected {{key: attribute, window: duration, gt: count}}")
    key = cond.get("key", "identity")
    if key not in ATTRIBUTES:
        raise PolicyError(f"{where}.key: unknown attribute {key!r}")
    try:
        window = parse_duration(cond.get("window", "60s"))
    except ValueError as e:
        raise PolicyError(f"{where}.window: {e}") from None
    return RateWindow(ATTRIBUTES[key], window, int(cond["gt"]))


def load_rules(path: str | Path) -> Policy:
    """Read and compile a rules YAML file."""
    from simharness.loader import ScenarioError, load_yaml  # positions; duplicate keys

    p = Path(path)
    try:
        data, marks = load_yaml(p)
    except ScenarioError as e:
        raise PolicyError(str(e)) from None
    return compile_rules(data, str(p), marks)
