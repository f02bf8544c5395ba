"""Replications -> means, confidence intervals and paired differences (DESIGN.md section 4).

No scipy: the Student t quantile comes from inverting the regularized incomplete beta function
(continued fraction, Numerical Recipes 6.4) by bisection, accurate to ~1e-12.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import lru_cache
from statistics import NormalDist

import numpy as np
import pandas as pd

from simharness.metric_catalogue import METRICS, MetricInfo
from simharness.misuse_catalogue import CATALOGUE, MISUSE_KINDS, standards_ids

__all__ = [
    "t_quantile",
    "t_ci",
    "wilson",
    "clip",
    "aggregate",
    "misuse_table",
    "STAT_SUFFIXES",
]

NONE_CONTROL = "none"
STAT_SUFFIXES: tuple[str, ...] = (
    "_mean", "_ci_low", "_ci_high", "_diff_mean", "_diff_ci_low", "_diff_ci_high",
)
_NAN = float("nan")


# --------------------------------------------------------------------------- Student t quantile

def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    # Convergence takes O(sqrt(max(a, b))) terms: generous cap for very large df.
    for m in range(1, 100_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    front = math.exp(log_front)
    # The continued fraction converges fast only on this side of the mean; use symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _t_upper_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0."""
    return 0.5 * _betainc(0.5 * df, 0.5, df / (df + t * t))


@lru_cache(maxsize=512)
def t_quantile(p: float, df: float) -> float:
    """The p quantile of Student's t with df degrees of freedom (p in (0, 1), df > 0)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile probability must be in (0, 1), got {p}")
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if p == 0.5:
        return 0.0
    tail = 1.0 - p if p > 0.5 else p
    lo, hi = 0.0, 1.0
    while _t_upper_tail(hi, df) > tail:
        lo, hi = hi, 2.0 * hi
    # The tail is monotone in t, so bisection always converges; 200 halvings reach float spacing.
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _t_upper_tail(mid, df) > tail:
            lo = mid
        else:
            hi = mid
    q = 0.5 * (lo + hi)
    return q if p > 0.5 else -q


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")


# --------------------------------------------------------------------------- intervals

def t_ci(values: Iterable[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student t interval of the mean over replications; NaNs are skipped.

    One value gives (x, nan, nan): no spread can be estimated. Identical values give (x, x, x).
    """
    _check_level(level)
    v = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    v = v[~np.isnan(v)]
    n = v.size
    if n == 0:
        return (_NAN, _NAN, _NAN)
    if n == 1:
        return (float(v[0]), _NAN, _NAN)
    if bool(np.all(v == v[0])):
        # Exact, so a constant metric does not show float noise from mean/std.
        x = float(v[0])
        return (x, x, x)
    mean = float(v.mean())
    sd = float(v.std(ddof=1))
    half = t_quantile(0.5 + level / 2.0, n - 1) * sd / math.sqrt(n)
    return (mean, mean - half, mean + half)


def _rule_of_three_constant(level: float) -> float:
    # One-sided exact binomial bound with 0 events: 1 - alpha**(1/n) ~ -ln(alpha)/n. At 95 % that
    # is the textbook "rule of three" (ln 20 = 2.996 ~ 3), which we report literally.
    return 3.0 if level == 0.95 else -math.log(1.0 - level)


def wilson(successes: float, n: float, level: float = 0.95) -> tuple[float, float, float]:
    """(p, low, high): Wilson score interval for a binomial share.

    At the boundaries (0 or n successes) only one side of the interval carries information, so
    the open side is the one-sided "rule of three" bound (3/n at 95 %, i.e. the exact
    Clopper-Pearson one-sided bound 1 - 0.05**(1/n) ~ 3/n). It is the conventional figure for
    "0 of n misuse instances got through", is comparable across reports, and avoids the two-sided
    Wilson bound z^2/(n + z^2) spending half of alpha on a tail that cannot be observed.
    """
    _check_level(level)
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (_NAN, _NAN, _NAN)
    p = successes / n
    k = _rule_of_three_constant(level)
    if successes == 0:
        return (0.0, 0.0, min(1.0, k / n))
    if successes == n:
        return (1.0, max(0.0, 1.0 - k / n), 1.0)
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    return (p, max(0.0, centre - half), min(1.0, centre + half))


# --------------------------------------------------------------------------- aggregate

def _numeric(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _rate_columns(m: MetricInfo, columns: pd.Index) -> bool:
    return m.kind == "rate" and m.numerator in columns and m.denominator in columns


def _present_metrics(summary: pd.DataFrame) -> list[MetricInfo]:
    return [m for m in METRICS if m.name in summary.columns or _rate_columns(m, summary.columns)]


class _Columns:
    """The summary's metric columns as float arrays, converted once (aggregate's inner loops
    then index numpy, not pandas: the serial part of a sweep)."""

    def __init__(self, summary: pd.DataFrame, metrics: Sequence[MetricInfo]):
        names = {n for m in metrics
                 for n in ((m.numerator, m.denominator) if _rate_columns(m, summary.columns)
                           else (m.name,))}
        self.rates = {m.name for m in metrics if _rate_columns(m, summary.columns)}
        self.values = {n: _numeric(summary[n]) for n in names}

    def per_replication(self, rows: np.ndarray, m: MetricInfo) -> np.ndarray:
        """One value per row: the metric, or num/den of its row for a rate (NaN if den is 0)."""
        if m.name in self.rates:
            num, den = self.values[m.numerator][rows], self.values[m.denominator][rows]
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
        return self.values[m.name][rows]

    def interval(self, rows: np.ndarray, m: MetricInfo, level: float
                 ) -> tuple[float, float, float]:
        """Student t over the per-replication values, rates included: replications are the
        independent units (the actions within one are not), so pooling actions as if
        independent understates the spread. A rate's interval is widened to at least the
        Wilson interval of its pooled counts: when every replication sits at 0 or 1 (all
        caught, none denied) the t interval has no width, while the finite counts still leave
        doubt. Then clipped to the metric's domain."""
        mean, low, high = t_ci(self.per_replication(rows, m), level)
        if m.name in self.rates:
            num, den = self.values[m.numerator][rows], self.values[m.denominator][rows]
            ok = ~(np.isnan(num) | np.isnan(den))
            if den[ok].sum() > 0:
                _, w_low, w_high = wilson(float(num[ok].sum()), float(den[ok].sum()), level)
                low = w_low if math.isnan(low) else min(low, w_low)
                high = w_high if math.isnan(high) else max(high, w_high)
        return clip((mean, low, high), m.lower, m.upper)


def clip(ci: tuple[float, float, float], lower: float | None, upper: float | None
         ) -> tuple[float, float, float]:
    """An interval (mean, low, high) cut to [lower, upper] (None: unbounded)."""
    mean, low, high = ci
    if lower is not None:
        low, high = (max(low, lower) if not math.isnan(low) else low,
                     max(high, lower) if not math.isnan(high) else high)
    if upper is not None:
        low, high = (min(low, upper) if not math.isnan(low) else low,
                     min(high, upper) if not math.isnan(high) else high)
    return mean, low, high


def _key(values: Sequence[object]) -> tuple[object, ...]:
    # NaN != NaN, so normalise missing values before using a key in a dict.
    return tuple("\0<NA>" if _isna(v) else v for v in values)


def _isna(v: object) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def aggregate(summary: pd.DataFrame, group_cols: Sequence[str],
              level: float = 0.95) -> pd.DataFrame:
    """One row per group (first-appearance order): `<metric>_mean/_ci_low/_ci_high` for every
    catalogued metric present, `replications`, and, when "control" is a group column, paired
    differences `<metric>_diff_*` (control - reference, t over replications paired on
    `replication`) against `paired_reference`: the first non-"none" control of the sweep point.
    """
    group_cols = list(group_cols)
    missing = [c for c in group_cols if c not in summary.columns]
    if missing:
        raise ValueError(f"group columns not in summary: {', '.join(missing)}")
    metrics = _present_metrics(summary)
    pairing = "control" in group_cols and "replication" in summary.columns
    point_cols = [c for c in group_cols if c != "control"]

    columns = [*group_cols, "replications"] + (["paired_reference"] if pairing else [])
    for m in metrics:
        columns += [f"{m.name}_mean", f"{m.name}_ci_low", f"{m.name}_ci_high"]
        if pairing:
            columns += [f"{m.name}_diff_mean", f"{m.name}_diff_ci_low", f"{m.name}_diff_ci_high"]
    if summary.empty:
        return pd.DataFrame(columns=columns)

    # Row positions per group, in first-appearance order.
    groups: list[tuple[tuple[object, ...], np.ndarray]] = []
    for key, sub in summary.reset_index(drop=True).groupby(group_cols, sort=False, dropna=False):
        groups.append((key if isinstance(key, tuple) else (key,), sub.index.to_numpy()))
    cols = _Columns(summary, metrics)
    replication = summary["replication"].to_numpy() if pairing else np.empty(0)

    references: dict[tuple[object, ...], str] = {}
    by_point_control: dict[tuple[tuple[object, ...], object], np.ndarray] = {}
    if pairing:
        ci = group_cols.index("control")
        for key, rows_ in groups:
            point = _key([v for i, v in enumerate(key) if i != ci])
            control = key[ci]
            if pd.Series(replication[rows_]).duplicated().any():
                raise ValueError(
                    f"group {dict(zip(group_cols, key, strict=True))} has duplicate replications:"
                    " a sweep column is probably missing from group_cols")
            by_point_control[(point, control)] = rows_
            if control != NONE_CONTROL and point not in references:
                references[point] = str(control)

    rows: list[dict[str, object]] = []
    for key, mine_rows in groups:
        row: dict[str, object] = dict(zip(group_cols, key, strict=True))
        row["replications"] = len(mine_rows)
        pairs = None
        if pairing:
            point = _key([row[c] for c in point_cols])
            ref = references.get(point)
            row["paired_reference"] = ref
            if ref is not None and row["control"] != ref:
                # Inner join on replication, in replication order.
                ref_rows = by_point_control[(point, ref)]
                mine_at = dict(zip(replication[mine_rows].tolist(), mine_rows.tolist(), strict=True))
                theirs_at = dict(zip(replication[ref_rows].tolist(), ref_rows.tolist(), strict=True))
                common = sorted(mine_at.keys() & theirs_at.keys())
                pairs = (np.array([mine_at[r] for r in common], dtype=np.int64),
                         np.array([theirs_at[r] for r in common], dtype=np.int64))
        for m in metrics:
            mean, low, high = cols.interval(mine_rows, m, level)
            row[f"{m.name}_mean"], row[f"{m.name}_ci_low"], row[f"{m.name}_ci_high"] = (
                mean, low, high)
            if pairing:
                diff = (_NAN, _NAN, _NAN)
                if pairs is not None:
                    # Pairs with a NaN on either side are skipped by t_ci.
                    d = cols.per_replication(pairs[0], m) - cols.per_replication(pairs[1], m)
                    diff = t_ci(d, level)
                    if m.lower is not None and m.upper is not None:  # e.g. rates: [-1, 1]
                        span = m.upper - m.lower
                        diff = clip(diff, -span, span)
                (row[f"{m.name}_diff_mean"], row[f"{m.name}_diff_ci_low"],
                 row[f"{m.name}_diff_ci_high"]) = diff
        rows.append(row)
    out = pd.DataFrame(rows, columns=columns)
    out["replications"] = out["replications"].astype("int64")
    return out


# --------------------------------------------------------------------------- misuse

MISUSE_COUNTS = ("injected", "prevented", "detected", "missed", "unreached")
_MISUSE_KNOWN = ("control", "replication", "kind", *MISUSE_COUNTS, "damage")


def misuse_table(rows: pd.DataFrame, sweep_cols: Sequence[str] | None = None) -> pd.DataFrame:
    """Misuse outcomes per control, replication and kind, with standards ids and caught_rate.

    Order: sweep point (`sweep_cols`, default every extra column) and control by first
    appearance, then replication, then kind in catalogue order (unknown kinds last,
    alphabetically), so the table never depends on how workers interleaved.
    """
    missing = [c for c in _MISUSE_KNOWN if c not in rows.columns]
    if missing:
        raise ValueError(f"misuse rows lack columns: {', '.join(missing)}")
    extras = [c for c in rows.columns if c not in _MISUSE_KNOWN]
    columns = ["control", "replication", *extras, "kind", "standards", *MISUSE_COUNTS,
               "caught_rate", "damage"]
    if rows.empty:
        return pd.DataFrame(columns=columns)

    df = rows.reset_index(drop=True).copy()
    point = extras if sweep_cols is None else list(sweep_cols)
    rank = df.groupby([*point, "control"], sort=False, dropna=False).ngroup()
    kinds = df["kind"].astype(str)
    order = {k: i for i, k in enumerate(MISUSE_KINDS)}
    kind_rank = kinds.map(lambda k: order.get(k, len(order)))
    keys = pd.DataFrame({"a": rank.to_numpy(), "b": df["replication"].to_numpy(),
                         "c": kind_rank.to_numpy(), "d": kinds.to_numpy()})
    # lexsort is stable, so exact duplicates keep their input order.
    idx = np.lexsort([keys[c].to_numpy() for c in ("d", "c", "b", "a")])
    df = df.iloc[idx].reset_index(drop=True)

    df["standards"] = [standards_ids(k) if k in CATALOGUE else "" for k in df["kind"].astype(str)]
    injected = _numeric(df["injected"])
    caught = _numeric(df["prevented"]) + _numeric(df["detected"])
    with np.errstate(divide="ignore", invalid="ignore"):
        df["caught_rate"] = np.where(injected > 0, caught / np.where(injected > 0, injected, 1.0),
                                     np.nan)
    return df[columns]


def misuse_by_kind(misuse: pd.DataFrame, sweep_cols: Sequence[str] = (),
                   level: float = 0.95) -> pd.DataFrame:
    """Per sweep point, misuse kind and control: misuse_caught_rate (with injected, caught and
    damage) as `aggregate` gives them: t over replications, and paired differences to the
    point's first non-`none` control on the same replications."""
    if misuse.empty:
        return aggregate(pd.DataFrame(columns=[*sweep_cols, "control", "replication", "kind"]),
                         [*sweep_cols, "kind", "control"], level)
    df = misuse[[*sweep_cols, "control", "replication", "kind"]].copy()
    df["misuse_injected"] = _numeric(misuse["injected"])
    # aggregate computes misuse_caught_rate per replication from these two
    df["misuse_caught"] = _numeric(misuse["prevented"]) + _numeric(misuse["detected"])
    df["damage"] = _numeric(misuse["damage"])
    return aggregate(df, [*sweep_cols, "kind", "control"], level)


# --------------------------------------------------------------------------- replication note

MIN_RELIABLE_REPLICATIONS = 5


def few_replications_note(agg: pd.DataFrame) -> str | None:
    """A warning line when some interval rests on fewer than 5 replications, else None."""
    if "replications" not in agg.columns or agg.empty:
        return None
    n = int(pd.to_numeric(agg["replications"]).min())
    if n >= MIN_RELIABLE_REPLICATIONS:
        return None
    return (f"note: intervals rest on {n} replication{'s' if n != 1 else ''} per control; with "
            f"fewer than {MIN_RELIABLE_REPLICATIONS} they are unreliable (raise --replications)")
