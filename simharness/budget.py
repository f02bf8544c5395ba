"""The latency-budget solver: bisection over simulations for the largest (or smallest) value of
one control parameter that still meets an SLO.

Each evaluated point is a full `simharness.run` (every replication, plus the hidden `none`
runs task inflation needs). "Meets" is decided on the replication mean; the 95 % CI of the
metric is reported with every point. Which end of the range meets the SLO sets the direction:
a PDP p99 service time that meets at the low end gives "the largest value that meets", a PDP
server count that meets at the high end gives "the smallest value that meets".

    solve_budget("pdp_capacity", "per_action_policy", "pdp.service_time.p99",
                 "task_inflation<=0.05")
"""

from __future__ import annotations

import difflib
import math
import operator
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simharness.metric_catalogue import METRIC_INFO, METRIC_NAMES
from simharness.units import parse_duration

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt,
}
_SLO_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*(\S+)\s*$")
#: integer-valued parameters (by last path segment) when lo/hi do not say
INTEGER_PARAMS = frozenset({"servers", "count", "gt", "dlp_max_bytes"})
#: how many times (x4 each) a duration range whose both ends meet is widened
WIDEN = 3


@dataclass(frozen=True)
class SLO:
    """`metric op value`, e.g. task_inflation <= 0.05."""

    metric: str
    op: str
    value: float

    def met(self, x: float) -> bool:
        return not math.isnan(x) and _OPS[self.op](x, self.value)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


def parse_slo(text: str) -> SLO:
    """Parse 'metric<=value' (ops <=, >=, <, >; a value may end in %); ValueError otherwise."""
    m = _SLO_RE.match(text or "")
    if not m:
        raise ValueError(f"bad SLO {text!r}: expected 'metric<=value' with one of <=, >=, <, > "
                         "(e.g. 'task_inflation<=0.05' or 'decision_p95_ms<=50')")
    metric, op, raw = m.groups()
    if metric not in METRIC_INFO:
        close = difflib.get_close_matches(metric, METRIC_NAMES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(METRIC_NAMES)}"
        raise ValueError(f"bad SLO {text!r}: unknown metric {metric!r}{hint}")
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ValueError(f"bad SLO {text!r}: {raw!r} is not a number") from None
    if math.isnan(value):
        raise ValueError(f"bad SLO {text!r}: the threshold is NaN")
    return SLO(metric, op, value)


@dataclass(frozen=True)
class Point:
    """One evaluated parameter value."""

    value: float
    mean: float
    ci_low: float
    ci_high: float
    meets: bool  # the SLO and every additional constraint hold (on the means)
    simulations: int
    role: str = "search"  # search | confirm
    also: tuple[tuple[str, float], ...] = ()  # means of the additional constraints' metrics
    label: str = ""  # the value as the user writes it ('5ms', '4')


@dataclass
class BudgetResult:
    scenario: str
    control: str
    param: str
    slo: SLO
    also: tuple[SLO, ...]
    kind: str  # "duration" | "integer" | "number"
    direction: str  # "largest" | "smallest": which value that meets the SLO is the answer
    answer: float | None  # None: no value in the range meets the SLO
    interval: tuple[float, float] | None  # the answer and its failing neighbour, ascending
    status: str  # "ok" | "none meets" | "all meet" | "max runs" | "not monotone"
    points: list[Point] = field(default_factory=list)  # in evaluation order
    runs: int = 0  # scenario runs (evaluated points)
    simulations: int = 0  # engine runs (replications x controls, hidden `none` included)
    confirmed: bool | None = None  # the confirming runs either side agree with the answer

    @property
    def at_answer(self) -> Point | None:
        return next((p for p in self.points if p.value == self.answer), None)

    def table(self) -> list[dict[str, Any]]:
        """The evaluated points sorted by value, as rows."""
        return [{"value": p.value, "mean": p.mean, "ci_low": p.ci_low, "ci_high": p.ci_high,
                 "meets": p.meets, "role": p.role, "also": p.also}
                for p in sorted(self.points, key=lambda p: p.value)]


# --------------------------------------------------------------------------- parameter values

def _param_value(scenario: Any, control: str, param: str, overrides: Sequence[str]) -> Any:
    """The parameter's value in the scenario's resolved control profile (None if unset)."""
    from simharness.loader import load_scenario

    spec = load_scenario(scenario, overrides=list(overrides), controls=[control])
    node: Any = spec.control(control).params
    for seg in param.split("."):
        if not isinstance(node, dict) or seg not in node:
            return None
        node = node[seg]
    return node


def _kind(param: str, current: Any, lo: Any, hi: Any) -> str:
    given = [v for v in (lo, hi) if v is not None]
    if any(isinstance(v, str) for v in given) or isinstance(current, str | dict):
        return "duration"
    if given and all(isinstance(v, int) and not isinstance(v, bool) for v in given):
        return "integer"
    if param.rsplit(".", 1)[-1] in INTEGER_PARAMS:
        return "integer"
    if isinstance(current, int) and not isinstance(current, bool):
        return "integer"
    # Durations are the common case (service times, rtt, ttl): a bare number is seconds.
    return "duration"


def _to_number(v: Any, kind: str) -> float:
    if kind == "duration":
        return parse_duration(v)
    return float(v)


def _show(v: float, kind: str) -> str:
    if kind == "integer":
        return str(int(v))
    if kind == "duration":
        if v == 0:
            return "0s"
        for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
            if v >= scale:
                return f"{v / scale:.4g}{unit}"
        return f"{v / 1e-6:.4g}us"
    return f"{v:.6g}"


def _override_value(v: float, kind: str) -> str:
    if kind == "integer":
        return str(int(v))
    return repr(float(v))  # seconds


def _default_range(kind: str, current: Any) -> tuple[float, float]:
    if kind == "integer":
        n = int(current) if isinstance(current, int | float) and math.isfinite(current) else 4
        return 1.0, float(max(2, 4 * n))
    if isinstance(current, dict):  # a distribution given whole: use its scale
        current = current.get("p99") or current.get("mean") or current.get("p50")
    try:
        seconds = parse_duration(current) if current is not None else 0.005
    except ValueError:
        seconds = 0.005
    seconds = seconds if seconds > 0 else 0.005
    return seconds, 64.0 * seconds


# --------------------------------------------------------------------------- evaluation

class _Evaluator:
    """Runs a point (once: results are cached by value) and reads the metric's mean and CI."""

    def __init__(self, scenario: Any, control: str, param: str, slo: SLO,
                 also: tuple[SLO, ...], kind: str,
                 overrides: Sequence[str], replications: int | None, out: Path, workers: int,
                 max_runs: int, progress: Callable[[Point], None] | None):
        self.scenario, self.control, self.param, self.slo, self.kind = (
            scenario, control, param, slo, kind)
        self.also = also
        self.overrides = list(overrides)
        if replications is not None:
            self.overrides.append(f"replications={int(replications)}")
        self.out, self.workers, self.max_runs, self.progress = out, workers, max_runs, progress
        self.points: list[Point] = []
        self._cache: dict[float, Point] = {}
        self.simulations = 0

    def len_left(self) -> int:
        """Points that may still be evaluated."""
        return self.max_runs - len(self.points)

    def __call__(self, value: float, role: str = "search") -> Point:
        if value in self._cache:
            return self._cache[value]
        from simharness.api import run

        sets = [*self.overrides,
                f"controls.{self.control}.{self.param}={_override_value(value, self.kind)}"]
        where = self.out / f"point-{len(self.points):03d}"
        res = run(self.scenario, controls=[self.control], overrides=sets, out=where, quiet=True,
                  workers=self.workers)
        agg = res.aggregate
        row = agg[agg["control"] == self.control]
        for m in {self.slo.metric, *(a.metric for a in self.also)}:
            if row.empty or f"{m}_mean" not in row.columns:
                raise ValueError(f"metric {m!r} is not in the results of control "
                                 f"{self.control!r}")
        r = row.iloc[0]
        m = self.slo.metric
        mean, low, high = (float(r[f"{m}_mean"]), float(r[f"{m}_ci_low"]),
                           float(r[f"{m}_ci_high"]))
        n = len(res.summary) if not res.summary.empty else 0
        # The summary lists reported runs only; hidden `none` runs are as many again.
        if "none" not in set(res.summary.get("control", [])) and self.control != "none":
            n *= 2
        self.simulations += n
        also = tuple((a.metric, float(r[f"{a.metric}_mean"])) for a in self.also)
        meets = self.slo.met(mean) and all(
            a.met(x) for a, (_, x) in zip(self.also, also, strict=True))
        point = Point(value, mean, low, high, meets, n, role, also, _show(value, self.kind))
        self.points.append(point)
        self._cache[value] = point
        if self.progress is not None:
            self.progress(point)
        return point


def format_point(i: int, param: str, point: Point, metric: str) -> str:
    """One probe as a progress line: the value tried, the metric and whether it meets."""
    also = "".join(f", {m} {x:.4g}" for m, x in point.also)
    return (f"probe {i}: {param}={point.label} -> {metric} {point.mean:.4g} "
            f"[{point.ci_low:.4g}, {point.ci_high:.4g}]{also}: "
            f"{'meets' if point.meets else 'misses'} the SLO"
            + (" (confirming)" if point.role == "confirm" else ""))


def _midpoint(a: float, b: float, kind: str) -> float:
    if kind == "integer":
        return float(math.floor((a + b) / 2))
    if a > 0 and b > 0:
        return math.sqrt(a * b)  # durations span decades: bisect in log space
    return (a + b) / 2


def _close(a: float, b: float, kind: str, tol: float) -> bool:
    if kind == "integer":
        return abs(b - a) <= 1
    lo, hi = min(a, b), max(a, b)
    return hi - lo <= tol * hi


def solve_budget(scenario: Any, control: str, param: str, slo: str | SLO,
                 lo: Any = None, hi: Any = None, replications: int | None = None,
                 overrides: Sequence[str] = (), tol: float = 0.05, max_runs: int = 16,
                 out: str | Path | None = None, workers: int = 1,
                 progress: Callable[[Point], None] | None = None,
                 also: Sequence[str | SLO] = ()) -> BudgetResult:
    """Bisection for the largest (or smallest) value of `controls.<control>.<param>` that meets
    `slo` on `scenario`.

    `lo`/`hi`: the range (durations like '1ms' or seconds; integers for counts). By default
    it is [current, 64 x current] for durations, [1, 4 x current] for integers; a range whose
    both ends meet is widened (x4 per step) while runs remain. `tol`: relative width at which
    a duration search stops (integers stop at neighbours). `max_runs` caps evaluated points,
    confirming runs included. The answer is confirmed by one run just inside and one just
    outside the meeting region (`confirmed`). `also`: further SLOs that must hold too, e.g.
    'task_success_rate>=0.99' next to a task-inflation SLO, since a PDP that times out and
    fails closed shortens (failed) tasks and so can look fast.
    """
    slo = parse_slo(slo) if isinstance(slo, str) else slo
    extra = tuple(parse_slo(a) if isinstance(a, str) else a for a in also)
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    if max_runs < 4:
        raise ValueError(f"max_runs must be at least 4 (both ends and two confirming runs), "
                         f"got {max_runs}")
    current = _param_value(scenario, control, param, overrides)
    kind = _kind(param, current, lo, hi)
    d_lo, d_hi = _default_range(kind, current)
    a = _to_number(lo, kind) if lo is not None else d_lo
    b = _to_number(hi, kind) if hi is not None else d_hi
    if not a < b:
        raise ValueError(f"the range must have lo < hi, got lo={_show(a, kind)}, "
                         f"hi={_show(b, kind)}")
    name = scenario if isinstance(scenario, str) else Path(str(scenario)).stem
    with tempfile.TemporaryDirectory(prefix="simharness-budget-") as tmp:
        ev = _Evaluator(scenario, control, param, slo, extra, kind, overrides, replications,
                        Path(out) if out is not None else Path(tmp), workers, max_runs,
                        progress)
        result = _search(ev, a, b, kind, tol, hi_given=hi is not None)
    result.scenario, result.control, result.param, result.slo = name, control, param, slo
    result.also = extra
    result.points, result.runs, result.simulations = ev.points, len(ev.points), ev.simulations
    return result


def _search(ev: _Evaluator, a: float, b: float, kind: str, tol: float, hi_given: bool
            ) -> BudgetResult:
    def done(direction, answer, interval, status, confirmed=None) -> BudgetResult:
        return BudgetResult("", "", "", ev.slo, ev.also, kind, direction, answer, interval,
                            status,
                            confirmed=confirmed)

    pa, pb = ev(a), ev(b)
    # A duration range whose both ends meet is widened upwards (at most WIDEN times): the
    # largest value is beyond it. A count that meets at both ends is not (fewer is at most lo).
    widen = 0 if hi_given or kind == "integer" else WIDEN
    while pa.meets and pb.meets and widen and ev.len_left() > 2:
        widen -= 1
        a, pa = b, pb
        b = b * 4
        pb = ev(b)
    if pa.meets and pb.meets:
        return done("smallest" if kind == "integer" else "largest", None, (a, b), "all meet")
    if not pa.meets and not pb.meets:
        return done("largest" if kind != "integer" else "smallest", None, None, "none meets")
    # good: a value that meets; bad: one that does not. The answer is the good end.
    direction = "largest" if pa.meets else "smallest"
    good, bad = (a, b) if pa.meets else (b, a)
    status = "ok"
    while not _close(good, bad, kind, tol):
        if ev.len_left() <= 2:  # keep two runs to confirm
            status = "max runs"
            break
        mid = _midpoint(min(good, bad), max(good, bad), kind)
        if mid in (good, bad):
            break
        if ev(mid).meets:
            good = mid
        else:
            bad = mid
    confirmed = _confirm(ev, good, bad, direction, kind, tol)
    if confirmed is False and status == "ok":
        status = "not monotone"
    return done(direction, good, (min(good, bad), max(good, bad)), status, confirmed)


def _confirm(ev: _Evaluator, good: float, bad: float, direction: str, kind: str, tol: float
             ) -> bool | None:
    """One run just inside the meeting region (must meet) and one just outside (must fail)."""
    if kind == "integer":
        step = 1.0
        inside = good - step if direction == "largest" else good + step
        outside = good + step if direction == "largest" else good - step
    else:
        factor = 1.0 + tol
        inside = good / factor if direction == "largest" else good * factor
        outside = good * factor if direction == "largest" else good / factor
    if inside < 0 or outside < 0 or (kind == "integer" and min(inside, outside) < 1):
        # A neighbour out of range: that side is the range end itself.
        inside = good if inside < 0 or (kind == "integer" and inside < 1) else inside
        outside = bad if outside < 0 or (kind == "integer" and outside < 1) else outside
    p_in, p_out = ev(inside, "confirm"), ev(outside, "confirm")
    return p_in.meets and not p_out.meets


def format_budget(result: BudgetResult) -> str:
    """The answer, its interval and CI, the runs it took, and the evaluated points."""
    k = result.kind
    lines = [f"budget: {result.scenario} / {result.control}: {result.direction} "
             f"{result.param} with {' and '.join(map(str, (result.slo, *result.also)))}"]
    if result.answer is None:
        tried = sorted(p.value for p in result.points)
        span = f"[{_show(tried[0], k)}, {_show(tried[-1], k)}]" if tried else "the range"
        lines.append({"all meet": f"every value tried in {span} meets the SLO: widen the range",
                      "none meets": f"no value tried in {span} meets the SLO: widen the range"}
                     .get(result.status, result.status))
    else:
        p = result.at_answer
        assert result.interval is not None
        lo, hi = result.interval
        lines.append(f"answer: {result.param} = {_show(result.answer, k)}  "
                     f"(boundary in [{_show(lo, k)}, {_show(hi, k)}])")
        if p is not None:
            others = "".join(f", {m} = {x:.4g}" for m, x in p.also)
            lines.append(f"at the answer: {result.slo.metric} = {p.mean:.4g} "
                         f"(95% CI {p.ci_low:.4g} .. {p.ci_high:.4g}){others}")
        conf = {True: "yes", False: "NO (the metric is not monotone here or too noisy)",
                None: "not run"}[result.confirmed]
        lines.append(f"confirmed by a run either side: {conf}")
        if result.status != "ok":
            lines.append(f"status: {result.status}")
    lines.append(f"runs: {result.runs} points, {result.simulations} simulations")
    lines.append(f"  {'value':>10}  {'mean':>10}  {'95% CI':>23}  meets  role")
    for row in result.table():
        ci = f"{row['ci_low']:.4g} .. {row['ci_high']:.4g}"
        others = "  ".join(f"{m}={x:.4g}" for m, x in row["also"])
        lines.append(f"  {_show(row['value'], k):>10}  {row['mean']:>10.4g}  {ci:>23}  "
                     f"{'yes' if row['meets'] else 'no':5}  {row['role']:7}  {others}".rstrip())
    return "\n".join(lines)
