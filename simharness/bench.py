"""Decision-path micro-benchmarks, baseline comparison and engine-speed measurement.

Every benchmark is timed against a reference measured in the same run and interleaved with it
(a plain-Python role check over as many items): `ratio = p10_us / reference p10_us` is what a
gate on a noisy machine compares, never a stored absolute time (STYLE.md, pytest-benchmark).
The 10th percentile, not the median: load on a shared machine only adds time, so a low quantile
of ~200 us chunks estimates the undisturbed cost; measured on these machines, the median ratio
of the rules compiler moved 795-1033 between six runs in separate processes, its p10 ratio
735-864.

The requests are realistic: the baseline workload is run once per control with a recording
wrapper around `decide`; the recorded requests (allowed and denied) are replayed. Every
benchmarked decide is checked: its decisions must equal those of a first untimed pass, match
what the engine decided (except where the engine's decision read run state: quarantines and
rate windows), and, for the shipped profiles, a few hand-made allow and deny cases.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import simpy

from simharness.controls.base import Control, Decision, Ledger, Request, World, make
from simharness.results import atomic_write_text
from simharness.spec import ScenarioSpec

REFERENCE = "reference/python_check"
#: the models benchmarked by default: one shipped profile per built-in model
DEFAULT_CONTROLS = ("none", "static_iam", "sse_only", "jit_per_task", "per_action_policy",
                    "layered", "task_policy", "data_flow", "human_approval")
#: how the recording run is shortened (enough requests, a fast setup)
RECORD_OVERRIDES = ("horizon=2h", "warmup=0s", "replications=1", "misuse.rate=0.2")


# --------------------------------------------------------------------------- recording

def record_requests(spec: ScenarioSpec, control: Control, replication: int = 0
                    ) -> list[tuple[Request, Decision]]:
    """Run `spec`'s workload under `control`; every (request, decision) decide() was asked.

    Requests are snapshots (the credential copied too) because the engine mutates them later.
    """
    from simharness.engine import simulate
    from simharness.workload import build_workload

    recorded: list[tuple[Request, Decision]] = []
    real = control.decide
    # A layered control finds its members' credentials by the composite's id: snapshot them
    # too, under fresh ids, since members revoke theirs later.
    parts: dict[int, tuple] | None = getattr(control, "_parts", None)
    fresh_ids = itertools.count(1 << 40)

    def recorder(req: Request) -> Decision:
        d = real(req)
        snap = copy.copy(req)
        cred = req.credential
        if cred is not None:
            snap.credential = copy.copy(cred)
            if parts is not None and cred.id in parts:
                snap.credential.id = next(fresh_ids)
                parts[snap.credential.id] = tuple(copy.copy(c) for c in parts[cred.id])
        recorded.append((snap, d))
        return d

    control.decide = recorder  # type: ignore[method-assign]
    # Per-task state (a task policy) is kept after its task ends, so the recorded requests can
    # be replayed against the state they were decided on.
    for c in _parts(control):
        if hasattr(c, "keep_task_state"):
            c.keep_task_state = True
    try:
        simulate(build_workload(spec, replication), control, probe=False)  # the run's own calls
    finally:
        del control.decide  # back to the class's method
    return recorded


def _parts(control: Control) -> list[Control]:
    return [control, *getattr(control, "members", ())]


def clear_decision_state(control: Control) -> None:
    """Forget quarantines and rate windows: replayed decisions then depend on the request only.

    (Layered controls keep their member credentials, which their decide needs.)
    """
    for c in _parts(control):
        c.quarantined.clear()
        for w in getattr(getattr(c, "policy", None), "windows", ()):
            w._times.clear()


def stateful_reasons(control: Control) -> frozenset[str]:
    """Reasons whose decision read run state (quarantine, a rate window), not the request."""
    out = {"identity-quarantined"}
    for c in _parts(control):
        policy = getattr(c, "policy", None)
        out.update(rule.id for rule in getattr(policy, "rules", ()) if rule.stateful)
    return frozenset(out)


def _depends_on_state(d: Decision, stateful: frozenset[str]) -> bool:
    return any(r.rsplit(":", 1)[-1] in stateful for r in d.reasons)


def select_requests(recorded: list[tuple[Request, Decision]], size: int
                    ) -> list[tuple[Request, Decision]]:
    """A mixed sample in run order: every denial (up to half of `size`), allows spread evenly."""
    denied = [i for i, (_, d) in enumerate(recorded) if not d.allow]
    allowed = [i for i, (_, d) in enumerate(recorded) if d.allow]
    keep_denied = denied[:: max(1, math.ceil(len(denied) / (size // 2)))] if denied else []
    room = size - len(keep_denied)
    keep_allowed = allowed[:: max(1, math.ceil(len(allowed) / room))] if allowed and room else []
    return [recorded[i] for i in sorted(keep_denied + keep_allowed)]


# --------------------------------------------------------------------------- known cases

def _request(world: World, identity: str, perm: tuple[str, str, str], cred, *,
             in_scope: bool = True, bytes_out: int = 0, attested: bool = True) -> Request:
    role = world.roles["support"]
    return Request(
        time=10.0, identity=identity, identity_mode="per_agent", attested=attested,
        source="agent", agent=identity, archetype="support", platform="first_party",
        tool=perm[0], action=perm[1], resource=world.resources[perm[2]], perm=perm,
        bytes_out=bytes_out, data_sensitivity=None, task_id=1, task_type="answer_ticket",
        task_active=True, in_scope=in_scope, entitled=perm in role, chain_depth=0,
        chain_origin=identity, origin_permits=perm in role, token_mode="none", credential=cred,
        risk=0.1)


def known_cases(model: str, world: World) -> list[tuple[str, Request, bool]]:
    """Hand-made (label, request, expected allow) cases on the baseline scenario's world for
    the shipped profiles of the built-in models (empty for other models)."""
    ledger = Ledger(world.weight)
    me = "support-0"
    read_crm, admin_sql = ("crm_api", "read", "crm"), ("sql", "admin", "ledger")
    paste = ("http", "send", "paste_site")
    role = ledger.issue(me, world.roles["support"], 0.0)
    token = ledger.issue(me, frozenset([read_crm]), 0.0, 900.0, kind="task", task_id=1,
                         audience=frozenset(["crm_api"]))
    if model == "none":
        return [("anything", _request(world, me, admin_sql, role, in_scope=False), True)]
    if model in ("static_iam", "sse_only"):
        cases = [("in-role read", _request(world, me, read_crm, role), True),
                 ("not in role", _request(world, me, admin_sql, role, in_scope=False), False),
                 ("no credential", _request(world, me, read_crm, None), False)]
        cases.append(("unapproved egress", _request(world, me, paste, role, in_scope=False),
                      model == "static_iam"))
        return cases
    if model == "jit_per_task":
        return [("in token scope", _request(world, me, read_crm, token), True),
                ("beyond token", _request(world, me, ("crm_api", "write", "crm"), token), False),
                ("token expired", dataclasses.replace(
                    _request(world, me, read_crm, token), time=1000.0), False),
                ("no token", _request(world, me, read_crm, None), False)]
    if model == "data_flow":
        send = ("http", "send", "outbound_mail")
        return [("clean send", _request(world, me, send, None), True),
                ("carries confidential out", dataclasses.replace(
                    _request(world, me, send, None), carries=frozenset(["crm"])), False)]
    if model == "human_approval":
        return [("low risk", _request(world, me, read_crm, None), True),
                ("high risk waits for a human", dataclasses.replace(
                    _request(world, me, read_crm, None), risk=0.95), False)]
    if model == "per_action_policy":
        return [("planned, attested", _request(world, me, read_crm, None), True),
                ("unplanned", _request(world, me, read_crm, None, in_scope=False), False),
                ("not attested", _request(world, me, read_crm, None, attested=False), False),
                ("unapproved egress", _request(world, me, paste, None), False),
                ("bulk egress", _request(world, me, ("http", "send", "outbound_mail"), None,
                                         bytes_out=5_000_000), False)]
    return []


# --------------------------------------------------------------------------- cases

@dataclass
class BenchCase:
    """One benchmark: `run(lo, hi)` performs operations lo..hi-1 of `ops`; `engine` names
    what is measured. `run()` performs all of them."""

    name: str
    engine: str
    run_slice: Callable[[int, int], Any]
    ops: int

    def run(self, lo: int = 0, hi: int | None = None) -> Any:
        return self.run_slice(lo, self.ops if hi is None else hi)


def check_decide(control: Control, recorded: list[tuple[Request, Decision]],
                 known: Sequence[tuple[str, Request, bool]] = ()) -> list[Decision]:
    """Verify a control's decide on recorded requests; return the expected decisions.

    Raises AssertionError when a replayed decision differs from the engine's (unless the
    engine's read run state) or a known case is decided wrongly.
    """
    stateful = stateful_reasons(control)
    expected = [control.decide(r) for r, _ in recorded]
    for i, ((req, seen), d) in enumerate(zip(recorded, expected, strict=True)):
        if d != seen and not _depends_on_state(seen, stateful):
            raise AssertionError(f"{control.name}: request {i} ({req.perm}) decided {d}, "
                                 f"the engine decided {seen}")
    for label, req, allow in known:
        d = control.decide(req)
        if d.allow is not allow:
            raise AssertionError(f"{control.name}: known case {label!r} decided {d}, "
                                 f"expected allow={allow}")
    return expected


def _decide_case(control: Control, requests: list[Request]) -> BenchCase:
    decide = control.decide

    def run(lo: int, hi: int) -> None:
        for req in requests[lo:hi]:
            decide(req)

    return BenchCase(f"decide/{control.name}", control.model, run, len(requests))


def decide_cases(controls: Sequence[str] | None = None, policy: str | None = None,
                 size: int = 1000, scenario: str = "baseline"
                 ) -> tuple[list[BenchCase], dict[str, tuple[Control, list[Request], list[Decision]]]]:
    """One checked decide() benchmark per control profile, on requests recorded from a run."""
    from simharness.loader import load_scenario

    names = list(controls or DEFAULT_CONTROLS)
    overrides = list(RECORD_OVERRIDES)
    if policy is not None:
        overrides += [f"controls.{n}.policy={policy}" for n in names
                      if n == "per_action_policy"]
    spec = load_scenario(scenario, overrides=overrides, controls=names)
    world = World(spec)
    cases, checked = [], {}
    for entry in spec.controls:
        control = make(entry.name, entry.model, entry.params, world)
        recorded = select_requests(record_requests(spec, control), size)
        clear_decision_state(control)
        shipped = policy is None and scenario == "baseline"
        known = known_cases(entry.model, world) if shipped and entry.name == entry.model else ()
        expected = check_decide(control, recorded, known)
        # The known cases join the timed set, so both branches are timed even when the run
        # itself hardly denies anything (static_iam on the baseline).
        requests = [r for r, _ in recorded] + [r for _, r, _ in known]
        expected += [control.decide(r) for _, r, _ in known]
        if shipped and entry.model != "none":
            allows = sum(d.allow for d in expected)
            if not 0 < allows < len(expected):
                raise AssertionError(f"{entry.name}: requests are not a mix of allow and deny")
        cases.append(_decide_case(control, requests))
        checked[entry.name] = (control, requests, expected)
    return cases, checked


def engine_cases(requests: Sequence[Request], world: World) -> tuple[list[BenchCase], list[str]]:
    """The shipped agent policy evaluated by each installed engine (rules, cedar, rego) on the
    same requests, side by side. Every engine must decide exactly as the built-in rules do
    (allow and reason set) before it is timed. Returns the cases and the engines skipped."""
    from simharness.controls.per_action_policy import resolve_policy_path
    from simharness.policy.engines import DEFAULT_POLICIES, ENGINES, MissingExtra, load_policy

    resources = list(world.resources.values())
    cases: list[BenchCase] = []
    skipped: list[str] = []
    expected: list[tuple[bool, list[str]]] | None = None
    for engine in ENGINES:
        try:
            policy = load_policy(engine, resolve_policy_path(DEFAULT_POLICIES[engine]), resources)
        except MissingExtra:
            skipped.append(engine)
            continue
        got = [(d.allow, sorted(d.reasons)) for d in map(policy.evaluate, requests)]
        if expected is None:
            expected = got  # the built-in rules engine comes first
        elif got != expected:
            bad = next(i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b)
            raise AssertionError(f"engine {engine}: request {bad} decided {got[bad]}, "
                                 f"rules decided {expected[bad]}")

        def run(lo: int, hi: int, evaluate=policy.evaluate) -> None:
            for req in requests[lo:hi]:
                evaluate(req)

        cases.append(BenchCase(f"policy/{engine}", engine, run, len(requests)))
    return cases, skipped


def rules_compile_case(policy: str | None = None, repeat: int = 20) -> BenchCase:
    """Compiling a rules file (parsed once) `repeat` times per round; checked on known cases."""
    import yaml

    from simharness.controls.per_action_policy import DEFAULT_POLICY, resolve_policy_path
    from simharness.loader import load_scenario
    from simharness.policy.rules import compile_rules

    path = resolve_policy_path(policy or DEFAULT_POLICY)
    data = yaml.safe_load(path.read_text())
    compiled = compile_rules(data, str(path))
    if policy is None:
        world = World(load_scenario("baseline", controls=["none"]))
        for label, req, allow in known_cases("per_action_policy", world):
            if compiled.evaluate(req).allow is not allow:
                raise AssertionError(f"compiled {path.name}: known case {label!r} is wrong")

    def run(lo: int, hi: int) -> None:
        for _ in range(hi - lo):
            compile_rules(data, str(path))

    return BenchCase("rules/compile", "rules", run, repeat)


class _RefRequest:
    __slots__ = ("identity", "perm", "time", "expires")

    def __init__(self, i: int):
        self.identity = f"agent-{i % 24}"
        self.perm = ("crm_api", ("read", "write", "delete")[i % 3], f"r{i % 8}")
        self.time = float(i)
        self.expires = math.inf if i % 5 else float(i)


def reference_case(ops: int) -> BenchCase:
    """The machine-speed yardstick: a plain-Python role check (attribute reads, a frozenset
    probe, a small tuple built per call). It is of the same kind as a decide(), so the ratio
    of a decide to it cancels the machine's speed and load far better than a bare dict lookup
    (whose ratio swung 2x between an idle and a loaded run)."""
    requests = [_RefRequest(i) for i in range(ops)]
    role = frozenset(("crm_api", a, f"r{k}") for a in ("read", "write") for k in range(8))

    def check(r: _RefRequest) -> tuple[bool, tuple[str, ...]]:
        if r.time >= r.expires:
            return False, ("expired",)
        if r.perm not in role:
            return False, ("not-in-role",)
        return True, ("in-role", r.identity)

    def run(lo: int, hi: int) -> None:
        for r in requests[lo:hi]:
            check(r)

    return BenchCase(REFERENCE, "python", run, ops)


# --------------------------------------------------------------------------- timing

def machine_info() -> dict[str, Any]:
    import simharness

    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "simharness": getattr(simharness, "__version__", "unknown"),
        "numpy": np.__version__,
        "simpy": getattr(simpy, "__version__", "unknown"),
    }


#: wall time of one timed chunk: short against a scheduler time slice, so that on a loaded
#: machine a preempted chunk is an outlier the median drops, whatever the benchmark's speed
CHUNK_US = 200.0


def time_cases(cases: Sequence[BenchCase], rounds: int, warmup: int = 3,
               chunk_us: float = CHUNK_US) -> dict[str, list[float]]:
    """Microseconds per operation of each case: `rounds` rounds, cases interleaved per round
    (so a slow phase of a noisy machine hits the reference and the candidates alike), each
    round timed in chunks of about `chunk_us` (one sample per chunk)."""
    clock = time.perf_counter_ns
    chunk: dict[str, int] = {}
    for c in cases:  # warm-up; size the chunks from the fastest warm-up round
        best = math.inf
        for _ in range(max(1, warmup)):
            t0 = clock()
            c.run()
            best = min(best, (clock() - t0) / 1000.0 / c.ops)
        chunk[c.name] = max(1, min(c.ops, int(chunk_us / best) if best > 0 else c.ops))
    samples: dict[str, list[float]] = {c.name: [] for c in cases}
    for _ in range(rounds):
        for c in cases:
            k, out = chunk[c.name], samples[c.name]
            for lo in range(0, c.ops, k):
                hi = min(c.ops, lo + k)
                t0 = clock()
                c.run(lo, hi)
                out.append((clock() - t0) / 1000.0 / (hi - lo))
    return samples


#: the quantile compared (see the module docstring)
RATIO_QUANTILE = 10


def summarize(case: BenchCase, us: list[float], ref_low: float) -> dict[str, Any]:
    med = statistics.median(us)
    low = float(np.percentile(us, RATIO_QUANTILE))
    return {
        "name": case.name,
        "engine": case.engine,
        "median_us": med,
        "mean_us": statistics.fmean(us),  # GC pauses and preemptions included
        "p10_us": low,
        "p99_us": float(np.percentile(us, 99)),
        "ops_per_s": 1e6 / med if med > 0 else math.inf,
        "ratio": low / ref_low if ref_low > 0 else math.inf,
        "samples": len(us),
        "ops_per_round": case.ops,
    }


def run_cases(cases: Sequence[BenchCase], n: int) -> list[dict[str, Any]]:
    """Time `cases` with a same-run reference; result rows, the reference first."""
    ops = max((c.ops for c in cases if c.name.startswith("decide/")), default=1000)
    ref = reference_case(ops)
    samples = time_cases([ref, *cases], n)
    ref_low = float(np.percentile(samples[ref.name], RATIO_QUANTILE))
    return [summarize(c, samples[c.name], ref_low) for c in [ref, *cases]]


def run_bench(controls: list[str] | None = None, policy: str | None = None, n: int = 50,
              size: int = 1000) -> dict[str, Any]:
    """Benchmark decide() of each control profile and the rules compiler.

    `controls`: profile names (default: one per built-in model); `policy`: a rules file for
    per_action_policy and the compiler; `n`: timed rounds per benchmark; `size`: requests per
    round. Returns `{"machine": {...}, "results": [...]}` (see module docstring).
    """
    return _bench(controls, policy, n, size)[0]


def _bench(controls: list[str] | None, policy: str | None, n: int, size: int = 1000
           ) -> tuple[dict[str, Any], list[BenchCase]]:
    cases, checked = decide_cases(controls, policy, size)
    if policy is None and "per_action_policy" in checked:
        control, requests, _ = checked["per_action_policy"]
        cases += engine_cases(requests, control.world)[0]
    cases.append(rules_compile_case(policy))
    data = {"machine": machine_info(), "reference": REFERENCE, "results": run_cases(cases, n)}
    return data, cases


def gate(data: dict[str, Any], cases: Sequence[BenchCase], baseline: dict[str, Any],
         max_regression: float = 0.25, n: int = 50, retries: int = 2) -> list[str]:
    """compare(), then re-measure every benchmark (same conditions as the first pass, the
    reference included) up to `retries` times while some regress: a benchmark fails only when
    it regresses on every attempt, so a burst of load on a shared machine does not fail the
    build. `data` keeps the last measurement."""
    problems = compare(data, baseline, max_regression)
    failing = {p.split(":", 1)[0] for p in problems}
    for _ in range(retries):
        if not failing:
            break
        data["results"] = run_cases(cases, n)
        problems = [p for p in compare(data, baseline, max_regression)
                    if p.split(":", 1)[0] in failing]
        failing = {p.split(":", 1)[0] for p in problems}
    return problems


# --------------------------------------------------------------------------- comparison

class BenchInputError(ValueError):
    """A bad baseline or limit: the user's input, not a regression (exit 2)."""


def coverage(current: dict[str, Any], baseline: dict[str, Any]
             ) -> tuple[list[str], list[str], list[str]]:
    """Benchmark names (reference excluded): in both, only in `current`, only in `baseline`."""
    cur = [r["name"] for r in current.get("results", []) if r["name"] != REFERENCE]
    base = [r["name"] for r in baseline.get("results", []) if r["name"] != REFERENCE]
    return ([n for n in cur if n in base], [n for n in cur if n not in base],
            [n for n in base if n not in cur])


def compare(current: dict[str, Any], baseline: dict[str, Any], max_regression: float = 0.25
            ) -> list[str]:
    """Regressions of `current` against `baseline`, compared by ratio to the reference.

    A benchmark regresses when its ratio grew by more than `max_regression` (0.25 = 25 %).
    Benchmarks missing from one side are not compared; if no benchmark is on both sides
    there is nothing to gate and BenchInputError says what is missing where.
    """
    common, only_current, only_base = coverage(current, baseline)
    if not common:
        raise BenchInputError(
            "the baseline shares no benchmark with this run, so nothing was compared; "
            f"only in this run: {', '.join(only_current) or '(none)'}; "
            f"only in the baseline: {', '.join(only_base) or '(none)'}")
    base = {r["name"]: r for r in baseline.get("results", [])}
    out = []
    for r in current.get("results", []):
        b = base.get(r["name"])
        if b is None or r["name"] == REFERENCE:
            continue
        change = r["ratio"] / b["ratio"] - 1.0
        # `not change <= limit`: a NaN ratio is a regression, never a pass.
        if not change <= max_regression:
            out.append(f"{r['name']}: ratio {r['ratio']:.2f} vs baseline {b['ratio']:.2f} "
                       f"(+{change:.0%}, limit +{max_regression:.0%}; "
                       f"p10 {r.get('p10_us', math.nan):.2f} us vs "
                       f"{b.get('p10_us', math.nan):.2f} us)")
    return out


def parse_regression(text: str | float) -> float:
    """'25%' or '0.25' or 0.25 -> 0.25; a bare number above 1 is refused (is '25' 25 % or
    25x?), as are negative and non-finite limits. Raises BenchInputError."""
    if isinstance(text, bool):
        raise BenchInputError(f"--max-regression {text!r}: give a percentage like 25%")
    s = text.strip() if isinstance(text, str) else str(text)
    percent = s.endswith("%")
    try:
        value = float(s[:-1] if percent else s)
    except ValueError:
        raise BenchInputError(f"--max-regression {text!r}: give a percentage like 25%") from None
    if not math.isfinite(value) or value < 0:
        raise BenchInputError(f"--max-regression {text!r}: must be a finite limit >= 0, "
                              "like 25%")
    if not percent and value > 1:
        raise BenchInputError(f"--max-regression {text!r}: a bare number is a fraction "
                              f"(0.25 = 25 %); write {s}% for {s} percent")
    return value / 100.0 if percent else value


def write_json(data: dict[str, Any], path: str | Path) -> Path:
    """Write a bench result atomically (temp file + replace)."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return Path(path)


def read_json(path: str | Path) -> dict[str, Any]:
    """A bench result file."""
    return json.loads(Path(path).read_text())


def read_baseline(path: str | Path) -> dict[str, Any]:
    """A baseline to compare against, checked: one line of BenchInputError if it is not a
    bench result (missing, a folder, not JSON, or without named results with a ratio)."""
    p = Path(path)
    where = f"--compare {str(p)!r}"
    if not p.is_file():
        raise BenchInputError(f"{where}: " + ("is a folder, not a bench JSON file" if p.is_dir()
                                               else "no such file"))
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise BenchInputError(f"{where}: not a bench JSON file ({type(e).__name__})") from None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list) or not results:
        raise BenchInputError(f"{where}: expected a JSON object with a `results` list, as "
                              "written by `simharness bench --json`")
    for i, r in enumerate(results):
        ratio = r.get("ratio") if isinstance(r, dict) else None
        if (not isinstance(r, dict) or not isinstance(r.get("name"), str)
                or not isinstance(ratio, int | float) or isinstance(ratio, bool)
                or not math.isfinite(ratio) or ratio <= 0
                or not isinstance(r.get("median_us"), int | float)):
            raise BenchInputError(f"{where}: results.{i} needs a name, a finite ratio > 0 "
                                  "and median_us")
    return data


def format_results(data: dict[str, Any]) -> str:
    """A plain table of a bench result."""
    lines = [f"{'benchmark':34} {'engine':18} {'p10 us':>9} {'median us':>10} {'p99 us':>10} "
             f"{'ops/s':>12} {'ratio':>7}"]
    for r in data["results"]:
        lines.append(f"{r['name']:34} {r['engine']:18} {r.get('p10_us', math.nan):9.3f} "
                     f"{r['median_us']:10.3f} {r['p99_us']:10.3f} {r['ops_per_s']:12,.0f} "
                     f"{r['ratio']:7.2f}")
    return "\n".join(lines)


def format_markdown(data: dict[str, Any], baseline: dict[str, Any] | None, limit: float,
                    problems: Sequence[str]) -> str:
    """The gate's result as markdown for a pull-request comment: each benchmark's ratio to the
    same-run reference, the baseline's, the change and the verdict."""
    base = {r["name"]: r for r in (baseline or {}).get("results", [])}
    verdict = ("**regression**" if problems else "no regression") + (
        f" beyond +{limit:.0%}" if baseline is not None else "")
    lines = ["### Decision-path benchmarks", "", verdict, "",
             "| benchmark | median us | ratio | baseline ratio | change |", "|---|---|---|---|---|"]
    for r in data["results"]:
        b = base.get(r["name"])
        change = "" if b is None else f"{r['ratio'] / b['ratio'] - 1:+.0%}"
        flag = " :x:" if any(p.startswith(f"{r['name']}:") for p in problems) else ""
        lines.append(f"| {r['name']} | {r['median_us']:.3f} | {r['ratio']:.2f} | "
                     f"{'' if b is None else format(b['ratio'], '.2f')} | {change}{flag} |")
    return "\n".join(lines) + "\n"


def bench_main(controls: list[str] | None = None, policy: str | None = None,
               json_out: str | Path | None = None, compare_to: str | Path | None = None,
               max_regression: str | float = "25%", n: int = 50, out=None,
               markdown_out: str | Path | None = None) -> int:
    """What `simharness bench` does: run, print, optionally save and gate; the exit code.
    `markdown_out`: also write the result as markdown (a pull-request comment)."""
    out = out if out is not None else sys.stdout  # looked up now: callers may redirect it
    # Input first: a bad baseline or limit must fail before minutes of measuring.
    limit = parse_regression(max_regression)
    baseline = read_baseline(compare_to) if compare_to is not None else None
    data, cases = _bench(controls, policy, n)
    problems = []
    if baseline is not None:
        problems = gate(data, cases, baseline, limit, n)
    print(format_results(data), file=out)
    if json_out is not None:
        write_json(data, json_out)
    if markdown_out is not None:
        atomic_write_text(markdown_out, format_markdown(data, baseline, limit, problems))
    if baseline is None:
        return 0
    common, only_current, only_base = coverage(data, baseline)
    for p in problems:
        print(f"REGRESSION {p}", file=out)
    if only_current or only_base:
        print(f"not compared (on one side only): {', '.join(only_current + only_base)}",
              file=out)
    if not problems:
        print(f"no regression beyond {limit:.0%} in {len(common)} benchmarks against "
              f"{compare_to}", file=out)
    return 1 if problems else 0


# --------------------------------------------------------------------------- engine speed

def speed_scenario(agents: int = 200, steps: int = 3, servers: int = 8,
                   horizon: str = "1h", task_rate: str = "60/h") -> ScenarioSpec:
    """A workload of `agents` identical agents whose tasks have `steps` tool steps, decided by
    per_action_policy at a PDP of `servers` servers; no misuse, no delegation."""
    data = {
        "schema_version": 1, "name": "engine_speed", "horizon": horizon, "warmup": 0,
        "replications": 1, "seed": 1,
        "resources": [{"name": "crm", "sensitivity": "confidential", "destination": "crm.example"}],
        "tools": [{"name": "crm_api", "actions": ["read", "write"], "resources": ["crm"]}],
        "agents": [{"name": "worker", "count": agents, "role": {"crm_api": ["read", "write"]},
                    "task_rate": task_rate, "tasks": {"job": 1}}],
        "tasks": {"job": {"steps": [{"tool": "crm_api", "action": "read" if i % 2 else "write",
                                     "resource": "crm"} for i in range(steps)]}},
        "timing": {"think": {"dist": "exponential", "mean": "2s"},
                   "step": {"dist": "lognormal", "p50": "300ms", "p99": "3s"}},
        "misuse": {"rate": 0},
        "controls": ["per_action_policy"],
    }
    import tempfile

    import yaml

    from simharness.loader import load_scenario

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "engine_speed.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        # Detector off: its flags would only add events the bare model does not have.
        return load_scenario(path, overrides=[
            f"controls.per_action_policy.pdp.servers={servers}",
            "controls.per_action_policy.detector=null",
            "controls.per_action_policy.revoke_on_deviation=false"])


def probe_overhead(horizon: str = "28h", repeats: int = 3) -> dict[str, Any]:
    """Time of a whole run (workload, digest, simulation, metrics: sweeps.run_one) of the
    speed scenario with authority probing over the same run without it, CPU seconds. The runs
    go in pairs, back to back, in alternating order (ABBA: a machine speeding up or slowing
    down over the measurement cancels out); the overhead is the median of the pairs' ratios,
    which one pair disturbed by a neighbour on the machine does not move. At the default
    horizon a run has about a million actions."""
    from simharness import sweeps

    spec = speed_scenario(horizon=horizon)
    task = next(t for t in sweeps.plan([({}, spec)]) if not t.hidden)
    best = {True: math.inf, False: math.inf}
    ratios = []
    actions = 0
    for k in range(repeats):
        took = {}
        for probe in ((False, True) if k % 2 == 0 else (True, False)):
            t0 = time.process_time()
            row = sweeps.run_one(task, probe=probe)["row"]
            took[probe] = time.process_time() - t0
            best[probe] = min(best[probe], took[probe])
            actions = row["actions"]
        ratios.append(took[True] / took[False] - 1.0)
    return {"actions": actions, "with_probe_s": best[True], "without_s": best[False],
            "pairs": ratios, "overhead": float(np.median(ratios))}


_SCALE_RUN = """
import json, resource, sys, tempfile, time
from simharness import bench, sweeps
spec = bench.speed_scenario(horizon=sys.argv[1])
task = next(t for t in sweeps.plan([({}, spec)]) if not t.hidden)
with tempfile.TemporaryDirectory() as audit:
    t0 = time.process_time()
    row = sweeps.run_one(task, audit_dir=audit if sys.argv[2] == "1" else None)["row"]
    cpu = time.process_time() - t0
print(json.dumps({"actions": row["actions"], "cpu_s": cpu,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def scale_run(horizon: str = "28h", audit: bool = True) -> dict[str, Any]:
    """One whole run of the speed scenario as `simharness run --audit` runs it (sweeps.run_one:
    workload, probing, metrics, the parquet writer), in a fresh process: actions, CPU seconds
    of the run, the process's peak resident memory in MB (imports included, about 120 MB).
    At 28h a run has about a million actions; at 280h ten million."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _SCALE_RUN, horizon, "1" if audit else "0"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bare_simpy(agents: int, steps: int, servers: int, horizon: float, rate: float,
               think_mean: float = 2.0, step_p50: float = 0.3, step_p99: float = 3.0,
               rtt: float = 0.001, svc_p50: float = 0.001, svc_p99: float = 0.005,
               seed: int = 1, events: list[int] | None = None) -> int:
    """The same event structure in plain SimPy: per agent Poisson task arrivals; per step a
    think timeout, an rtt timeout, a PDP resource request, a service timeout, a step timeout.
    Random numbers are drawn in numpy blocks. Returns the number of actions decided (and puts
    the events SimPy scheduled in `events[0]`)."""
    events = events if events is not None else [0]
    from simharness.units import Z99

    rng = np.random.default_rng(seed)
    env = simpy.Environment()
    pdp = simpy.Resource(env, servers)
    n_draws = int(rate * horizon * 2 + 50) * steps * agents + 1000
    think = iter(rng.exponential(think_mean, n_draws).tolist())
    step = iter(np.exp(rng.normal(math.log(step_p50), (math.log(step_p99 / step_p50)) / Z99,
                                  n_draws)).tolist())
    service = iter(np.exp(rng.normal(math.log(svc_p50), (math.log(svc_p99 / svc_p50)) / Z99,
                                     n_draws)).tolist())
    done = [0]

    def agent(arrivals: list[float]):
        for t in arrivals:
            if env.now < t:
                yield env.timeout(t - env.now)
            for _ in range(steps):
                yield env.timeout(next(think))
                yield env.timeout(rtt)
                with pdp.request() as req:
                    yield req
                    yield env.timeout(next(service))
                done[0] += 1
                yield env.timeout(next(step))

    for _ in range(agents):
        n = rng.poisson(rate * horizon)
        env.process(agent(np.sort(rng.uniform(0, horizon, n)).tolist()))
    env.run(until=horizon)
    events[0] = next(env._eid)  # type: ignore[attr-defined]
    return done[0]


def engine_speed(agents: int = 200, steps: int = 3, servers: int = 8, horizon: str = "1h",
                 task_rate: str = "60/h", repeats: int = 3) -> dict[str, Any]:
    """Actions per second of the engine on its kernel against the same engine on SimPy (like
    for like), and, as a labelled extra, a bare SimPy model of the same kind of work, same run.

    simharness is timed whole-process per run (workload sampling, control, engine; metrics
    excluded) and engine-only; the best of `repeats` of each is kept. The bare model measures
    nothing, so simharness runs without authority probing for the comparison; the engine with
    probing is timed too (`probe_cost`: its time over the engine's without).
    """
    from simharness.engine import Engine, simulate
    from simharness.units import parse_duration, parse_rate
    from simharness.workload import build_workload

    spec = speed_scenario(agents, steps, servers, horizon, task_rate)
    entry = spec.controls[0]
    world = World(spec)
    h, rate = parse_duration(horizon), parse_rate(task_rate)
    best_whole = best_engine = best_bare = best_probed = best_simpy = math.inf
    kernel_events = simpy_events = 0
    actions = bare_actions = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        workload = build_workload(spec, 0)
        control = make(entry.name, entry.model, entry.params, world)
        t1 = time.perf_counter()
        log = simulate(workload, control, probe=False)
        t2 = time.perf_counter()
        actions = len(log.actions)
        best_whole, best_engine = min(best_whole, t2 - t0), min(best_engine, t2 - t1)
        workload = build_workload(spec, 0)
        control = make(entry.name, entry.model, entry.params, world)
        t1 = time.perf_counter()
        simulate(workload, control)
        best_probed = min(best_probed, time.perf_counter() - t1)
        # Like for like: the same engine and processes on simpy.Environment.
        workload = build_workload(spec, 0)
        control = make(entry.name, entry.model, entry.params, world)
        t1 = time.perf_counter()
        on_simpy = Engine(workload, control, probe=False, backend="simpy")
        on_simpy.run()
        best_simpy = min(best_simpy, time.perf_counter() - t1)
        simpy_events = on_simpy.env.events()
        workload = build_workload(spec, 0)
        on_kernel = Engine(workload, make(entry.name, entry.model, entry.params, world),
                           probe=False)
        on_kernel.run()
        kernel_events = on_kernel.env.events()
        t0 = time.perf_counter()
        bare_events = [0]
        bare_actions = bare_simpy(agents, steps, servers, h, rate, events=bare_events)
        best_bare = min(best_bare, time.perf_counter() - t0)
    sim_rate, engine_rate = actions / best_whole, actions / best_engine
    bare_rate = bare_actions / best_bare
    simpy_rate = actions / best_simpy
    return {
        "workload": {"agents": agents, "steps": steps, "servers": servers, "horizon": horizon,
                     "task_rate": task_rate},
        "simharness_actions": actions,
        "simharness_s": best_whole,
        "simharness_actions_per_s": sim_rate,
        "engine_only_actions_per_s": engine_rate,
        "bare_actions": bare_actions,
        "bare_s": best_bare,
        "bare_actions_per_s": bare_rate,
        "ratio": sim_rate / bare_rate,
        "engine_only_ratio": engine_rate / bare_rate,
        "probe_cost": best_probed / best_engine,
        # Like for like: the engine on the kernel against the same engine on SimPy.
        "engine_on_simpy_actions_per_s": simpy_rate,
        "kernel_vs_simpy": engine_rate / simpy_rate,
        "events_per_action": {"kernel": kernel_events / actions,
                              "simpy": simpy_events / actions,
                              "bare_simpy": bare_events[0] / bare_actions},
    }
