"""What a policy edit changes: the same requests through the old and the new policy, then the
scenario under both (paired replications).

1. The request stream: the scenario's first replication is simulated under per_action_policy
   with the OLD policy and every request decide() saw is recorded (bench.record_requests). Both
   policies then judge that identical stream in order (each with its own rate windows, fed the
   same requests). A flip is a request one allows and the other denies; flips are grouped by
   the rule that decides under the new policy and by permission, with an example request each.
2. Outcomes: the scenario runs with two per_action_policy controls, `old` and `new`, on the same
   workloads; the paired differences (new - old) of misuse caught, false denials, exposure and
   decision latency come with t intervals over replications.

`--expect FILE` lists accepted flips; with `--ci` any flip not accepted exits 1.
"""

from __future__ import annotations

import fnmatch
import json
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from simharness.controls.base import Decision, Request, World, make
from simharness.policy.engines import ENGINES, load_policy

ALLOW_TO_DENY, DENY_TO_ALLOW = "allow_to_deny", "deny_to_allow"
OUTCOMES = ("misuse_caught_rate", "false_deny_rate", "exposure", "decision_p99_ms",
            "task_success_rate")
SUFFIX_ENGINE = {".yaml": "rules", ".yml": "rules", ".cedar": "cedar", ".rego": "rego"}


class DiffInputError(ValueError):
    """Bad input to diff-policy (exit 2)."""


@dataclass
class FlipGroup:
    change: str  # allow_to_deny | deny_to_allow
    rule: str  # the new policy's deciding rule(s)
    permission: str  # tool/action/resource
    count: int = 0
    example: dict[str, Any] = field(default_factory=dict)
    accepted: bool = False


@dataclass
class PolicyDiff:
    requests: int
    groups: list[FlipGroup]
    outcomes: list[dict[str, Any]]  # metric, old, new, diff mean and interval
    replications: int

    @property
    def flips(self) -> int:
        return sum(g.count for g in self.groups)

    @property
    def unexpected(self) -> list[FlipGroup]:
        return [g for g in self.groups if not g.accepted]


def engine_for(path: Path, engine: str | None) -> str:
    """The engine of a policy file: as given, else from its suffix."""
    if engine is not None:
        if engine not in ENGINES:
            raise DiffInputError(f"--engine {engine!r}: choose {', '.join(ENGINES)}")
        return engine
    found = SUFFIX_ENGINE.get(path.suffix.lower())
    if found is None:
        raise DiffInputError(f"{path}: cannot tell the engine from the suffix; give --engine")
    return found


def _example(req: Request) -> dict[str, Any]:
    return {"identity": req.identity, "archetype": req.archetype, "task_type": req.task_type,
            "in_scope": req.in_scope, "attested": req.attested, "bytes_out": req.bytes_out,
            "args": dict(req.args), "args_unknown": sorted(req.args_unknown),
            "time_s": round(req.time, 3)}


def _rule(d: Decision) -> str:
    return ";".join(d.reasons) or "(none)"


def replay(requests: Sequence[Request], old, new) -> list[tuple[Request, Decision, Decision]]:
    """Each request through both policies, in order; each policy observes what it judged."""
    out = []
    for req in requests:
        a, b = old.evaluate(req), new.evaluate(req)
        old.observe(req)
        new.observe(req)
        out.append((req, a, b))
    return out


def group_flips(judged: Iterable[tuple[Request, Decision, Decision]]) -> list[FlipGroup]:
    """Flips by (change, the new policy's deciding rule, permission), largest first."""
    groups: dict[tuple[str, str, str], FlipGroup] = {}
    for req, a, b in judged:
        if a.allow == b.allow:
            continue
        change = DENY_TO_ALLOW if b.allow else ALLOW_TO_DENY
        key = (change, _rule(b), "/".join(req.perm))
        g = groups.get(key)
        if g is None:
            g = groups[key] = FlipGroup(*key, example=_example(req) | {"old": _rule(a)})
        g.count += 1
    return sorted(groups.values(), key=lambda g: (-g.count, g.change, g.rule, g.permission))


def load_expect(path: Path) -> list[dict[str, str]]:
    """Accepted flips: `accept: [{change, rule, permission}, ...]` (each optional, glob)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DiffInputError(f"--expect {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise DiffInputError(f"--expect {path}: not YAML ({e})") from None
    items = data.get("accept") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise DiffInputError(f"--expect {path}: expected `accept:` with a list of "
                             "{change, rule, permission}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not set(item) <= {"change", "rule", "permission"}:
            raise DiffInputError(f"--expect {path}: accept[{i}]: a mapping of change, rule, "
                                 "permission (each optional, globs allowed)")
        change = item.get("change", "*")
        if change not in ("*", ALLOW_TO_DENY, DENY_TO_ALLOW):
            raise DiffInputError(f"--expect {path}: accept[{i}].change: {ALLOW_TO_DENY} or "
                                 f"{DENY_TO_ALLOW}")
        out.append({k: str(item.get(k, "*")) for k in ("change", "rule", "permission")})
    return out


def mark_expected(groups: list[FlipGroup], accepted: list[dict[str, str]]) -> None:
    for g in groups:
        g.accepted = any(fnmatch.fnmatchcase(g.change, a["change"])
                         and fnmatch.fnmatchcase(g.rule, a["rule"])
                         and fnmatch.fnmatchcase(g.permission, a["permission"])
                         for a in accepted)


def diff_policy(old: Path, new: Path, scenario: str, engine: str | None = None,
                expect: Path | None = None, overrides: Sequence[str] = (),
                outcomes: bool = True) -> PolicyDiff:
    """Compare two policies on a scenario's request stream and outcomes."""
    from simharness import api
    from simharness.bench import record_requests
    from simharness.loader import load_scenario

    for p in (old, new):
        if not p.is_file():
            raise DiffInputError(f"{p}: no such policy file")
    engines = engine_for(old, engine), engine_for(new, engine)
    if engines[0] != engines[1]:
        raise DiffInputError(f"{old} is {engines[0]}, {new} is {engines[1]}: compare policies "
                             "of one engine (or give --engine)")
    eng = engines[0]
    spec = load_scenario(scenario, list(overrides), ["per_action_policy"])
    base = spec.controls[0]
    world = World(spec)

    def profile(name: str, path: Path) -> dict[str, Any]:
        return {"name": name, "model": "per_action_policy",
                "params": {**base.params, "engine": eng, "policy": str(path.resolve())}}

    try:
        entries = [profile("old", old), profile("new", new)]
        control = make("old", "per_action_policy", entries[0]["params"], world)
        judged = replay([r for r, _ in record_requests(spec, control)],
                        load_policy(eng, old, world.resources.values()),
                        load_policy(eng, new, world.resources.values()))
    except (ValueError, FileNotFoundError) as e:  # a policy that does not compile
        raise DiffInputError(str(e)) from None
    groups = group_flips(judged)
    if expect is not None:
        mark_expected(groups, load_expect(expect))
    rows: list[dict[str, Any]] = []
    reps = 0
    if outcomes:
        paired = spec.model_copy(update={"controls": [type(base).model_validate(e)
                                                      for e in entries]})
        with tempfile.TemporaryDirectory(prefix="simharness-diff-") as tmp:
            agg = api.run(paired, out=Path(tmp) / "out").aggregate.set_index("control")
        new_row = agg.loc["new"]
        reps = int(new_row["replications"])
        for m in OUTCOMES:
            if f"{m}_mean" not in agg.columns:
                continue
            rows.append({"metric": m, "old": float(agg.loc["old", f"{m}_mean"]),
                         "new": float(new_row[f"{m}_mean"]),
                         "diff": float(new_row[f"{m}_diff_mean"]),
                         "ci_low": float(new_row[f"{m}_diff_ci_low"]),
                         "ci_high": float(new_row[f"{m}_diff_ci_high"])})
    return PolicyDiff(len(judged), groups, rows, reps)


# --------------------------------------------------------------------------- output

def _num(x: float) -> str:
    return "nan" if x != x else f"{x:.4g}"


def to_json(d: PolicyDiff) -> str:
    return json.dumps({"requests": d.requests, "flips": d.flips,
                       "unexpected": sum(g.count for g in d.unexpected),
                       "groups": [g.__dict__ for g in d.groups],
                       "outcomes": d.outcomes, "replications": d.replications},
                      indent=2, sort_keys=True) + "\n"


def to_text(d: PolicyDiff, markdown: bool = False) -> str:
    counts = Counter(g.change for g in d.groups for _ in range(g.count))
    lines = [("### " if markdown else "") + "Policy change",
             "",
             f"{d.requests} requests replayed: {counts[ALLOW_TO_DENY]} allow -> deny, "
             f"{counts[DENY_TO_ALLOW]} deny -> allow"
             + (f"; {sum(g.count for g in d.unexpected)} not in --expect" if d.groups else ""),
             ""]
    if d.groups:
        head = ["change", "rule (new)", "permission", "requests", "expected", "example (old rule)"]
        body = [[g.change, g.rule, g.permission, str(g.count), "yes" if g.accepted else "no",
                 f"{g.example['archetype']}/{g.example['task_type']} ({g.example['old']})"]
                for g in d.groups]
        lines += _table(head, body, markdown) + [""]
    if d.outcomes:
        lines.append(("### " if markdown else "")
                     + f"Outcomes, new - old ({d.replications} paired replications, 95 % t)")
        lines.append("")
        head = ["metric", "old", "new", "difference", "95 % interval"]
        body = [[r["metric"], _num(r["old"]), _num(r["new"]), _num(r["diff"]),
                 f"[{_num(r['ci_low'])}, {_num(r['ci_high'])}]"] for r in d.outcomes]
        lines += _table(head, body, markdown)
    return "\n".join(lines) + "\n"


def _table(head: list[str], body: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body])
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in body]
