"""stats: t quantiles, intervals, aggregate with paired differences, misuse and headline tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from simharness import stats
from simharness.misuse_catalogue import standards_ids


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [
        (0.975, 1, 12.706204736174707),
        (0.975, 4, 2.7764451051977987),
        (0.975, 29, 2.045229642132703),
        (0.95, 10, 1.8124611228107335),
        (0.995, 3, 5.840909309733350),
        (0.975, 1000, 1.9623390808264078),
    ],
)
def test_t_quantile_known_values(p, df, expected):
    assert stats.t_quantile(p, df) == pytest.approx(expected, abs=1e-6)
    assert stats.t_quantile(1 - p, df) == pytest.approx(-expected, abs=1e-6)


def test_t_quantile_tends_to_normal():
    assert stats.t_quantile(0.975, 1e7) == pytest.approx(1.959963984540054, abs=1e-6)


def test_t_ci_known_value():
    mean, low, high = stats.t_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)
    assert mean == 3.0
    assert low == pytest.approx(3.0 - half, abs=1e-9)
    assert high == pytest.approx(3.0 + half, abs=1e-9)


def test_t_ci_edge_cases():
    m, lo, hi = stats.t_ci([4.2])
    assert m == 4.2 and math.isnan(lo) and math.isnan(hi)
    assert stats.t_ci([0.1, 0.1, 0.1]) == (0.1, 0.1, 0.1)
    assert all(math.isnan(x) for x in stats.t_ci([]))
    assert stats.t_ci([1.0, float("nan"), 3.0])[0] == 2.0  # NaN skipped
    with pytest.raises(ValueError):
        stats.t_ci([1.0, 2.0], level=1.0)


def test_wilson_known_value():
    p, lo, hi = stats.wilson(8, 10)
    assert p == 0.8
    assert lo == pytest.approx(0.4901624, abs=1e-6)
    assert hi == pytest.approx(0.9433178, abs=1e-6)


def test_wilson_rule_of_three_and_edges():
    assert stats.wilson(0, 30) == (0.0, 0.0, pytest.approx(0.1))
    assert stats.wilson(30, 30) == (1.0, pytest.approx(0.9), 1.0)
    assert stats.wilson(0, 2) == (0.0, 0.0, 1.0)  # 3/n clipped to [0, 1]
    assert all(math.isnan(x) for x in stats.wilson(0, 0))
    with pytest.raises(ValueError):
        stats.wilson(5, 4)


def test_clip_cuts_to_the_domain_and_keeps_nan():
    assert stats.clip((0.01, -0.02, 0.04), 0.0, 1.0) == (0.01, 0.0, 0.04)
    assert stats.clip((0.99, 0.95, 1.03), 0.0, 1.0) == (0.99, 0.95, 1.0)
    assert stats.clip((-0.2, -0.5, 0.1), None, None) == (-0.2, -0.5, 0.1)
    m, lo, hi = stats.clip((3.0, math.nan, math.nan), 0.0, None)
    assert m == 3.0 and math.isnan(lo) and math.isnan(hi)


def _synthetic(reps: int = 12, seed: int = 7) -> pd.DataFrame:
    """Two controls whose exposure shares a large per-replication effect (common random
    numbers), so the paired difference is far tighter than the unpaired one."""
    rng = np.random.default_rng(seed)
    rows = []
    for pdp in (5.0, 50.0):
        common = rng.normal(1000.0, 200.0, reps)
        for control, shift in (("none", 300.0), ("static_iam", 100.0), ("jit_per_task", 0.0)):
            for r in range(reps):
                legit = 100 + r
                rows.append({
                    "scenario": "s", "control": control, "replication": r, "seed": 1000 + r,
                    "pdp_ms": pdp,
                    "exposure": common[r] + shift + rng.normal(0.0, 5.0),
                    "legit_actions": legit,
                    "legit_denied": 0 if control == "none" else int(r % 3 + (control == "jit_per_task")),
                    "decision_p99_ms": pdp if control != "none" else 0.0,
                })
    return pd.DataFrame(rows)


def test_aggregate_layout_and_rates():
    summary = _synthetic()
    agg = stats.aggregate(summary, ["pdp_ms", "control"])
    assert list(agg["control"]) == ["none", "static_iam", "jit_per_task"] * 2
    assert list(agg["pdp_ms"]) == [5.0] * 3 + [50.0] * 3
    assert (agg["replications"] == 12).all()
    assert (agg["paired_reference"] == "static_iam").all()
    for m in ("exposure", "false_deny_rate", "decision_p99_ms"):
        for s in stats.STAT_SUFFIXES:
            assert f"{m}{s}" in agg.columns
    # A rate: one value per replication (num / den of its row), Student t over them (the
    # textbook formula with t(0.975, 11) = 2.200985), at least as wide as the pooled Wilson
    # interval, clipped to [0, 1].
    sub = summary[(summary.pdp_ms == 5.0) & (summary.control == "jit_per_task")]
    row = agg[(agg.pdp_ms == 5.0) & (agg.control == "jit_per_task")].iloc[0]
    per_rep = (sub.legit_denied / sub.legit_actions).to_numpy()
    half = 2.200985 * per_rep.std(ddof=1) / math.sqrt(len(per_rep))
    _, w_low, w_high = stats.wilson(sub.legit_denied.sum(), sub.legit_actions.sum())
    assert row.false_deny_rate_mean == pytest.approx(per_rep.mean(), rel=1e-12)
    assert row.false_deny_rate_ci_low == pytest.approx(
        max(min(per_rep.mean() - half, w_low), 0), rel=1e-5)
    assert row.false_deny_rate_ci_high == pytest.approx(max(per_rep.mean() + half, w_high),
                                                        rel=1e-5)
    # Zero denials in every replication under none: no spread between replications, but the
    # counts leave the rule-of-three bound 3 / n.
    none = agg[(agg.pdp_ms == 5.0) & (agg.control == "none")].iloc[0]
    n = summary[(summary.pdp_ms == 5.0) & (summary.control == "none")].legit_actions.sum()
    assert (none.false_deny_rate_mean, none.false_deny_rate_ci_low) == (0.0, 0.0)
    assert none.false_deny_rate_ci_high == pytest.approx(3 / n)


def test_rate_interval_is_clipped_to_zero():
    # Denials in one replication of twelve: the t interval dips below 0 and is cut there.
    rows = [{"control": "c", "replication": r, "legit_actions": 100,
             "legit_denied": 5 if r == 0 else 0} for r in range(12)]
    agg = stats.aggregate(pd.DataFrame(rows), ["control"])
    assert agg.false_deny_rate_ci_low.iloc[0] == 0.0
    assert agg.false_deny_rate_ci_high.iloc[0] > agg.false_deny_rate_mean.iloc[0] > 0


def test_only_bounded_metrics_are_clipped():
    # task_inflation may be negative (a control can finish tasks sooner); exposure may not.
    rows = [{"control": "c", "replication": r, "task_inflation": v, "exposure": v}
            for r, v in enumerate([-0.02, 0.01, -0.03, 0.0, -0.01])]
    agg = stats.aggregate(pd.DataFrame(rows), ["control"]).iloc[0]
    assert agg.task_inflation_ci_low < -0.02
    assert agg.exposure_ci_low == 0.0


def test_few_replications_are_flagged():
    rows = [{"control": "c", "replication": r, "exposure": float(r)} for r in range(3)]
    note = stats.few_replications_note(stats.aggregate(pd.DataFrame(rows), ["control"]))
    assert note is not None and "fewer than 5" in note and "3 replications" in note
    rows = [{"control": "c", "replication": r, "exposure": float(r)} for r in range(5)]
    assert stats.few_replications_note(stats.aggregate(pd.DataFrame(rows), ["control"])) is None


def test_aggregate_paired_ci_narrower_than_unpaired():
    summary = _synthetic()
    agg = stats.aggregate(summary, ["pdp_ms", "control"])
    for pdp in (5.0, 50.0):
        at = agg[agg.pdp_ms == pdp].set_index("control")
        ref, jit = at.loc["static_iam"], at.loc["jit_per_task"]
        assert math.isnan(ref.exposure_diff_mean)
        paired_width = jit.exposure_diff_ci_high - jit.exposure_diff_ci_low
        unpaired_width = ((jit.exposure_ci_high - jit.exposure_ci_low) ** 2
                          + (ref.exposure_ci_high - ref.exposure_ci_low) ** 2) ** 0.5
        assert paired_width < unpaired_width / 5
        assert jit.exposure_diff_ci_low < -100 < jit.exposure_diff_ci_high
        # `none` is paired against the reference too.
        assert at.loc["none"].exposure_diff_mean == pytest.approx(200, abs=10)
        # Per-replication rate difference, paired.
        sub = summary[summary.pdp_ms == pdp]
        d = (sub[sub.control == "jit_per_task"].legit_denied.to_numpy()
             - sub[sub.control == "static_iam"].legit_denied.to_numpy()) / sub[
            sub.control == "static_iam"].legit_actions.to_numpy()
        assert jit.false_deny_rate_diff_mean == pytest.approx(d.mean())


def test_aggregate_pairs_on_replication_not_position():
    summary = _synthetic(reps=6)
    # Each (pdp_ms, control) block is 6 contiguous rows: permute rows within blocks only, so
    # group order (and thus the reference) stays, but positions no longer line up.
    rng = np.random.default_rng(3)
    idx = np.concatenate([b + rng.permutation(6) for b in range(0, len(summary), 6)])
    shuffled = summary.iloc[idx]
    a = stats.aggregate(summary, ["pdp_ms", "control"])
    b = stats.aggregate(shuffled, ["pdp_ms", "control"])
    key = ["pdp_ms", "control"]
    assert list(a[key].itertuples()) == list(b[key].itertuples())
    pd.testing.assert_series_equal(a.exposure_diff_mean, b.exposure_diff_mean, rtol=1e-12)
    assert a.exposure_diff_mean.notna().sum() == 4


def test_aggregate_skips_nan_and_missing_replications():
    summary = _synthetic(reps=5)
    summary.loc[(summary.control == "jit_per_task") & (summary.replication == 0), "exposure"] = np.nan
    summary = summary[~((summary.control == "static_iam") & (summary.replication == 4))]
    agg = stats.aggregate(summary, ["pdp_ms", "control"]).set_index(["pdp_ms", "control"])
    row = agg.loc[(5.0, "jit_per_task")]
    assert row.replications == 5
    sub = summary[(summary.pdp_ms == 5.0)]
    jit = sub[sub.control == "jit_per_task"].set_index("replication").exposure
    ref = sub[sub.control == "static_iam"].set_index("replication").exposure
    d = (jit - ref).dropna()
    assert len(d) == 3
    assert row.exposure_diff_mean == pytest.approx(d.mean())
    assert row.exposure_mean == pytest.approx(jit.dropna().mean())


def test_aggregate_reference_only_none_and_duplicates():
    only_none = pd.DataFrame({"control": ["none", "none"], "replication": [0, 1],
                              "exposure": [1.0, 2.0]})
    agg = stats.aggregate(only_none, ["control"])
    assert agg.paired_reference.isna().all() and agg.exposure_diff_mean.isna().all()
    with pytest.raises(ValueError, match="duplicate replications"):
        stats.aggregate(_synthetic(reps=3), ["control"])
    with pytest.raises(ValueError, match="group columns"):
        stats.aggregate(only_none, ["nope"])
    empty = stats.aggregate(only_none.iloc[:0], ["control"])
    assert empty.empty and "exposure_mean" in empty.columns


def test_aggregate_deterministic():
    summary = _synthetic()
    a = stats.aggregate(summary, ["pdp_ms", "control"])
    b = stats.aggregate(summary.copy(), ["pdp_ms", "control"])
    assert a.to_csv(float_format=repr) == b.to_csv(float_format=repr)


def _misuse_rows() -> pd.DataFrame:
    return pd.DataFrame([
        {"control": "jit", "replication": 1, "kind": "exfiltration", "injected": 2,
         "prevented": 1, "detected": 0, "missed": 1, "unreached": 0, "damage": 3.0, "pdp_ms": 5.0},
        {"control": "jit", "replication": 0, "kind": "token_replay", "injected": 0,
         "prevented": 0, "detected": 0, "missed": 0, "unreached": 2, "damage": 0.0, "pdp_ms": 5.0},
        {"control": "jit", "replication": 0, "kind": "out_of_scope_resource", "injected": 4,
         "prevented": 3, "detected": 1, "missed": 0, "unreached": 0, "damage": 0.0, "pdp_ms": 5.0},
        {"control": "none", "replication": 0, "kind": "mystery", "injected": 1,
         "prevented": 0, "detected": 0, "missed": 1, "unreached": 0, "damage": 1.5, "pdp_ms": 5.0},
    ])


def test_misuse_table():
    out = stats.misuse_table(_misuse_rows())
    assert list(out.columns) == ["control", "replication", "pdp_ms", "kind", "standards",
                                 "injected", "prevented", "detected", "missed", "unreached",
                                 "caught_rate", "damage"]
    assert list(zip(out.control, out.replication, out.kind, strict=True)) == [
        ("jit", 0, "out_of_scope_resource"), ("jit", 0, "token_replay"),
        ("jit", 1, "exfiltration"), ("none", 0, "mystery")]
    assert out.standards[0] == standards_ids("out_of_scope_resource")
    assert out.standards[3] == ""
    assert out.caught_rate[0] == 1.0 and out.caught_rate[2] == 0.5
    assert math.isnan(out.caught_rate[1])
    shuffled = stats.misuse_table(_misuse_rows().iloc[[2, 0, 1, 3]])
    pd.testing.assert_frame_equal(out, shuffled)


def test_misuse_by_kind_pairs_replications_and_clips_rate_differences():
    """Hand-computed: per-replication caught rates of B (1/2, 1, 1) and A (0, 0, 0) on one kind;
    B - A = (1/2, 1, 1): mean 5/6, sd sqrt(1/12), t(0.975, 2) = 4.302652729911275."""
    from simharness.stats import misuse_by_kind

    rows = []
    for control, caught in (("A", (0, 0, 0)), ("B", (1, 2, 2))):
        for rep, c in enumerate(caught):
            rows.append({"control": control, "replication": rep, "kind": "exfiltration",
                         "injected": 2, "prevented": c, "detected": 0, "damage": 2.0 - c})
    out = misuse_by_kind(pd.DataFrame(rows)).set_index("control")
    assert list(out["kind"]) == ["exfiltration"] * 2
    b = out.loc["B"]
    assert b["paired_reference"] == "A"
    assert b["misuse_caught_rate_mean"] == pytest.approx(5 / 6)
    half = 4.302652729911275 * math.sqrt(1 / 12) / math.sqrt(3)
    assert b["misuse_caught_rate_diff_mean"] == pytest.approx(5 / 6)
    assert b["misuse_caught_rate_diff_ci_low"] == pytest.approx(5 / 6 - half)
    assert b["misuse_caught_rate_diff_ci_high"] == 1.0  # 5/6 + 0.72 clipped to the span of a rate
    assert b["damage_mean"] == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- closed forms
# The incomplete beta function and the t quantile against formulas that need no numerics.

_BETA_CLOSED_FORMS = [
    (1.0, 1.0, lambda x: x),
    (3.0, 1.0, lambda x: x ** 3),
    (1.0, 4.0, lambda x: 1 - (1 - x) ** 4),
    (2.0, 2.0, lambda x: 3 * x ** 2 - 2 * x ** 3),
    (0.5, 0.5, lambda x: 2 / math.pi * math.asin(math.sqrt(x))),
    # I_x(a + 1, b) = I_x(a, b) - x^a (1 - x)^b / (a B(a, b)), from I_x(1/2, 1/2), B = pi:
    (1.5, 0.5, lambda x: 2 / math.pi * (math.asin(math.sqrt(x)) - math.sqrt(x * (1 - x)))),
]


@pytest.mark.parametrize(("a", "b", "exact"), _BETA_CLOSED_FORMS)
def test_regularized_incomplete_beta_matches_closed_forms(a, b, exact):
    """I_x(a, b) on both sides of the mean (the continued fraction and its symmetric form)."""
    for x in (1e-6, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1 - 1e-6):
        assert stats._betainc(a, b, x) == pytest.approx(exact(x), rel=1e-10, abs=1e-14), x


def test_regularized_incomplete_beta_at_the_ends_of_its_domain():
    """I_0 = 0 and I_1 = 1 exactly (and outside [0, 1] clamped), never a log(0) error."""
    for a, b in ((0.5, 0.5), (2.0, 3.0), (10.0, 0.5)):
        assert stats._betainc(a, b, 0.0) == 0.0
        assert stats._betainc(a, b, -0.5) == 0.0
        assert stats._betainc(a, b, 1.0) == 1.0
        assert stats._betainc(a, b, 1.5) == 1.0


def _t_closed_form(p: float, df: int) -> float:
    """Student t quantiles with a closed form (Hill 1970; Shaw 2006): df 1, 2 and 4."""
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    alpha = 4 * p * (1 - p)
    q = math.cos(math.acos(math.sqrt(alpha)) / 3) / math.sqrt(alpha)
    return math.copysign(2 * math.sqrt(q - 1), p - 0.5)


@pytest.mark.parametrize("df", [1, 2, 4])
def test_t_quantile_matches_closed_forms(df):
    for p in (0.001, 0.025, 0.1, 0.3, 0.45, 0.5, 0.55, 0.7, 0.9, 0.975, 0.999):
        assert stats.t_quantile(p, df) == pytest.approx(_t_closed_form(p, df), rel=1e-9,
                                                        abs=1e-12), p


def test_t_upper_tail_of_the_cauchy():
    """P(T > t) for df = 1 is 1/2 - atan(t)/pi."""
    for t in (0.0, 0.5, 1.0, 3.0, 40.0):
        assert stats._t_upper_tail(t, 1.0) == pytest.approx(0.5 - math.atan(t) / math.pi,
                                                             rel=1e-10)


@pytest.mark.parametrize(("p", "df"), [(0.0, 3), (1.0, 3), (-0.1, 3), (0.5, 0), (0.9, -1.0),
                                       (0.9, float("nan"))])
def test_t_quantile_rejects_probabilities_and_df_outside_the_domain(p, df):
    with pytest.raises(ValueError):
        stats.t_quantile(p, df)


def test_t_ci_of_two_values_by_hand():
    """n = 2: half-width t(0.975, 1) x sd / sqrt(2) = tan(0.475 pi) x |a - b| / 2; at 90 %
    t(0.95, 1) = tan(0.45 pi)."""
    mean, low, high = stats.t_ci(np.array([1.0, 3.0]))
    half = math.tan(0.475 * math.pi) * math.sqrt(2.0) / math.sqrt(2.0)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half), rel=1e-9)
    mean, low, high = stats.t_ci([1.0, 3.0], level=0.9)
    half = math.tan(0.45 * math.pi)
    assert (low, high) == pytest.approx((2.0 - half, 2.0 + half), rel=1e-9)
    # Values that differ only after the first are not "identical".
    assert stats.t_ci([5.0, 5.0, 6.0])[1] < 5.0
    with pytest.raises(ValueError):
        stats.t_ci([1.0, 2.0], level=0.0)


def test_wilson_by_the_textbook_formula_at_other_levels():
    """Wilson's interval p_c +- z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n), z = Phi^-1(1 - a/2)."""
    for k, n, level, z in ((3, 7, 0.95, 1.959963984540054), (5, 20, 0.9, 1.6448536269514722),
                           (1, 3, 0.99, 2.5758293035489004)):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        assert stats.wilson(k, n, level) == pytest.approx((p, centre - half, centre + half),
                                                           rel=1e-9)


def test_wilson_boundaries_at_other_levels_use_the_exact_one_sided_constant():
    """At a level other than 95 % the open side is -ln(1 - level) / n (the 95 % figure is the
    textbook 3 / n); an invalid level or count is refused."""
    assert stats.wilson(0, 100, 0.9) == (0.0, 0.0, pytest.approx(-math.log(0.1) / 100))
    assert stats.wilson(50, 50, 0.99) == (1.0, pytest.approx(1 + math.log(0.01) / 50), 1.0)
    assert stats.wilson(3, 3) == (1.0, 0.0, 1.0)  # 1 - 3/3, not below 0
    for bad in ((-1, 5), (1, -1)):
        with pytest.raises(ValueError, match="successes"):
            stats.wilson(*bad)
    with pytest.raises(ValueError, match="confidence level"):
        stats.wilson(1, 2, level=1.5)


def test_clip_with_one_side_only():
    assert stats.clip((0.5, -1.0, 2.0), None, 1.0) == (0.5, -1.0, 1.0)
    assert stats.clip((0.5, -1.0, 2.0), 0.0, None) == (0.5, 0.0, 2.0)
    # The bounds move both ends: an interval wholly outside the domain collapses onto it.
    assert stats.clip((5.0, 3.0, 4.0), None, 1.0) == (5.0, 1.0, 1.0)
    assert stats.clip((-5.0, -4.0, -3.0), 0.0, None) == (-5.0, 0.0, 0.0)
    m, lo, hi = stats.clip((0.5, math.nan, math.nan), None, 1.0)
    assert math.isnan(lo) and math.isnan(hi)


def test_missing_values_make_equal_keys():
    """Two different NaN objects (NaN != NaN) are the same group key; None and pd.NA too;
    values pandas cannot test for missingness (lists) are not missing."""
    assert stats._key([float("nan"), 1]) == stats._key([float("nan"), 1])
    assert stats._key([None]) == stats._key([pd.NA]) == stats._key([np.nan])
    assert stats._key(["a", 2.0]) == ("a", 2.0)
    assert stats._isna(float("nan")) and stats._isna(None)
    assert not stats._isna([1, 2]) and not stats._isna("x") and not stats._isna(0.0)


def test_numeric_columns_become_floats_with_nan_for_missing_or_text():
    out = stats._numeric(pd.Series([1, 2, None], dtype="Int64"))
    assert out.dtype == np.float64 and out[:2].tolist() == [1.0, 2.0] and math.isnan(out[2])
    out = stats._numeric(pd.Series(["3", "x", 4]))
    assert out.dtype == np.float64 and out[0] == 3.0 and math.isnan(out[1]) and out[2] == 4.0
    assert stats._numeric(pd.Series([True, False])).dtype == np.float64


def test_boolean_metric_columns_aggregate_as_zero_and_one():
    """A 0/1 column stored as booleans pairs like numbers (True - False = 1)."""
    rows = [{"control": c, "replication": r, "tasks_failed": v}
            for c, vals in (("a", (True, True, False)), ("b", (False, False, False)))
            for r, v in enumerate(vals)]
    agg = stats.aggregate(pd.DataFrame(rows), ["control"]).set_index("control")
    assert agg.loc["a", "tasks_failed_mean"] == pytest.approx(2 / 3)
    assert agg.loc["b", "tasks_failed_diff_mean"] == pytest.approx(-2 / 3)


def test_a_rate_needs_both_its_columns():
    """Only the denominator of false_deny_rate present: no rate columns, no KeyError."""
    rows = [{"control": "c", "replication": r, "legit_actions": 10} for r in range(3)]
    agg = stats.aggregate(pd.DataFrame(rows), ["control"])
    assert "legit_actions_mean" in agg.columns
    assert not any(c.startswith("false_deny_rate") for c in agg.columns)
    rows = [{"control": "c", "replication": r, "legit_denied": 1} for r in range(3)]
    agg = stats.aggregate(pd.DataFrame(rows), ["control"])
    assert not any(c.startswith("false_deny_rate") for c in agg.columns)


def test_misuse_table_names_missing_columns():
    rows = _misuse_rows().drop(columns=["damage", "unreached"])
    with pytest.raises(ValueError, match="misuse rows lack columns: unreached, damage"):
        stats.misuse_table(rows)
    empty = stats.misuse_table(_misuse_rows().iloc[:0])
    assert empty.empty and list(empty.columns)[:3] == ["control", "replication", "pdp_ms"]


def test_few_replications_note_wording_and_edge_cases():
    one = pd.DataFrame({"control": ["c"], "replications": [1]})
    assert stats.few_replications_note(one) == (
        "note: intervals rest on 1 replication per control; with fewer than 5 they are "
        "unreliable (raise --replications)")
    two = pd.DataFrame({"control": ["c", "d"], "replications": [4, 2]})
    assert stats.few_replications_note(two).startswith("note: intervals rest on 2 replications ")
    # No replications column, or no rows: nothing to say (and no error).
    assert stats.few_replications_note(pd.DataFrame({"control": ["c"]})) is None
    assert stats.few_replications_note(pd.DataFrame({"replications": []})) is None


def test_rate_of_one_replication_is_its_wilson_interval():
    """One replication: no t interval, so the rate's interval is Wilson's on its counts (8 of
    10: 0.4901624 .. 0.9433178, test_wilson_known_value)."""
    rows = pd.DataFrame([{"control": "c", "replication": 0, "legit_actions": 10,
                          "legit_denied": 8}])
    row = stats.aggregate(rows, ["control"]).iloc[0]
    assert row.false_deny_rate_mean == 0.8
    assert row.false_deny_rate_ci_low == pytest.approx(0.4901624, abs=1e-6)
    assert row.false_deny_rate_ci_high == pytest.approx(0.9433178, abs=1e-6)


def test_rate_pools_only_rows_with_both_counts_and_needs_a_denominator():
    """Wilson on the pooled counts of rows where both are known (8 of 10 here, the NaN row is
    left out); with no legitimate action anywhere the rate is undefined."""
    rows = pd.DataFrame([{"control": "c", "replication": 0, "legit_actions": 10, "legit_denied": 8},
                         {"control": "c", "replication": 1, "legit_actions": 30,
                          "legit_denied": np.nan}])
    row = stats.aggregate(rows, ["control"]).iloc[0]
    assert (row.false_deny_rate_ci_low, row.false_deny_rate_ci_high) == pytest.approx(
        (0.4901624, 0.9433178), abs=1e-6)
    rows = pd.DataFrame([{"control": "c", "replication": r, "legit_actions": 0, "legit_denied": 0}
                         for r in range(3)])
    row = stats.aggregate(rows, ["control"]).iloc[0]
    assert all(math.isnan(row[f"false_deny_rate{s}"]) for s in ("_mean", "_ci_low", "_ci_high"))


def test_aggregate_without_control_or_replication_has_no_pairing():
    rows = pd.DataFrame([{"pdp_ms": p, "control": "c", "replication": r, "exposure": float(r + p)}
                         for p in (1, 2) for r in range(3)])
    by_point = stats.aggregate(rows, ["pdp_ms"])
    assert list(by_point.columns[:2]) == ["pdp_ms", "replications"]
    assert "paired_reference" not in by_point.columns
    assert not any(c.endswith("_diff_mean") for c in by_point.columns)
    assert by_point.exposure_mean.tolist() == [2.0, 3.0]
    no_rep = stats.aggregate(rows.drop(columns="replication"), ["pdp_ms", "control"])
    assert "paired_reference" not in no_rep.columns and no_rep.replications.tolist() == [3, 3]
    assert no_rep.replications.dtype == np.int64


def test_aggregate_pairs_within_a_sweep_point_whose_value_is_missing():
    """A sweep column that is NaN on every row is still one sweep point: the second control
    pairs against the first non-none one there (differences 1, 2, 3 by hand)."""
    rows = pd.DataFrame([{"pdp_ms": float("nan"), "control": c, "replication": r,
                          "exposure": float(r * k)}
                         for c, k in (("a", 1), ("b", 2)) for r in (1, 2, 3)])
    agg = stats.aggregate(rows, ["pdp_ms", "control"]).set_index("control")
    assert agg.loc["b", "paired_reference"] == "a"
    assert agg.loc["b", "exposure_diff_mean"] == 2.0
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # sd of (1, 2, 3) is 1
    assert agg.loc["b", "exposure_diff_ci_low"] == pytest.approx(2.0 - half)


def test_misuse_by_kind_of_nothing_is_an_empty_table_with_the_columns():
    out = stats.misuse_by_kind(pd.DataFrame(columns=["control", "replication", "kind", "injected",
                                                     "prevented", "detected", "damage"]))
    assert out.empty and {"kind", "control", "replications"} <= set(out.columns)


def test_levels_outside_zero_one_are_refused_by_name():
    for level in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"^confidence level must be in \(0, 1\)"):
            stats.t_ci([1.0, 2.0], level=level)
        with pytest.raises(ValueError, match=r"^confidence level must be in \(0, 1\)"):
            stats.wilson(1, 2, level=level)


def test_t_ci_takes_any_iterable_and_none_as_missing():
    want = stats.t_ci([1.0, 3.0])
    assert stats.t_ci(x for x in (1.0, 3.0)) == want
    assert stats.t_ci(iter([1, 3])) == want
    assert stats.t_ci([1.0, None, 3.0]) == want


def test_aggregate_uses_the_level_it_is_given():
    """Values 1, 2, 3 at 90 %: 2 +- t(0.95, 2) x 1 / sqrt(3), t(0.95, 2) = 0.9 / sqrt(0.095)
    (the closed form for 2 degrees of freedom)."""
    rows = pd.DataFrame([{"control": "c", "replication": r, "exposure": float(r + 1)}
                         for r in range(3)])
    row = stats.aggregate(rows, ["control"], level=0.9).iloc[0]
    half = 0.9 / math.sqrt(0.095) / math.sqrt(3)
    assert (row.exposure_ci_low, row.exposure_ci_high) == pytest.approx((2 - half, 2 + half))


def test_aggregate_names_every_missing_group_column():
    rows = pd.DataFrame({"control": ["c"], "replication": [0], "exposure": [1.0]})
    with pytest.raises(ValueError, match=r"^group columns not in summary: nope, nada$"):
        stats.aggregate(rows, ["control", "nope", "nada"])


def _wilson_by_hand(k, n, z):
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def test_aggregate_level_reaches_paired_differences_and_wilson_bounds():
    """At 90 %: paired differences 1, 2, 3 give 2 +- t(0.95, 2) / sqrt(3); a one-replication
    rate (8 of 10) gets Wilson's 90 % interval (z = 1.6448536269514722)."""
    rows = pd.DataFrame([{"control": c, "replication": r, "exposure": float(r * k)}
                         for c, k in (("a", 1), ("b", 2)) for r in (1, 2, 3)])
    b = stats.aggregate(rows, ["control"], level=0.9).set_index("control").loc["b"]
    half = 0.9 / math.sqrt(0.095) / math.sqrt(3)
    assert (b.exposure_diff_ci_low, b.exposure_diff_ci_high) == pytest.approx((2 - half, 2 + half))
    one = pd.DataFrame([{"control": "c", "replication": 0, "legit_actions": 10,
                         "legit_denied": 8}])
    row = stats.aggregate(one, ["control"], level=0.9).iloc[0]
    assert (row.false_deny_rate_ci_low, row.false_deny_rate_ci_high) == pytest.approx(
        _wilson_by_hand(8, 10, 1.6448536269514722))


def test_duplicate_replications_message_names_the_likely_cause():
    with pytest.raises(ValueError, match="a sweep column is probably missing from group_cols"):
        stats.aggregate(_synthetic(reps=3), ["control"])


def test_misuse_caught_counts_prevented_and_detected():
    """Caught = prevented + detected: 1 + 1 of 2, and 0 + 2 of 4, over two replications."""
    rows = pd.DataFrame([
        {"control": "c", "replication": 0, "kind": "exfiltration", "injected": 2,
         "prevented": 1, "detected": 1, "damage": 0.0},
        {"control": "c", "replication": 1, "kind": "exfiltration", "injected": 4,
         "prevented": 0, "detected": 2, "damage": 1.0}])
    row = stats.misuse_by_kind(rows).iloc[0]
    assert row.misuse_caught_mean == 2.0 and row.misuse_caught_rate_mean == pytest.approx(0.75)
    table = stats.misuse_table(rows.assign(missed=0, unreached=0))
    assert table.caught_rate.tolist() == [1.0, 0.5]


def test_misuse_table_keeps_controls_in_order_of_appearance():
    rows = _misuse_rows()
    rows["control"] = rows["control"].map({"jit": "zeta", "none": "alpha"})
    out = stats.misuse_table(rows)
    assert out.control.tolist() == ["zeta", "zeta", "zeta", "alpha"]


def test_wilson_bounds_stay_in_zero_one_where_rounding_would_overshoot():
    """Just below n successes (a fractional count), the centre plus half-width rounds above 1
    for many n (brute force over the grid below); the bound returned never exceeds 1."""
    import math as m

    z = 1.959963984540054

    def unclipped_high(k, n):
        p, d = k / n, 1 + z * z / n
        return (p + z * z / (2 * n)) / d + z * m.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d

    grid = [(n - e, n) for n in range(2, 200) for e in (1e-9, 1e-12, 1e-14)]
    assert sum(unclipped_high(k, n) > 1.0 for k, n in grid) > 20
    assert all(0.0 <= stats.wilson(k, n)[1] <= stats.wilson(k, n)[2] <= 1.0 for k, n in grid)


def test_misuse_by_kind_names_the_caught_rate_and_leaves_it_nan_without_injections():
    """The rate column is misuse_caught_rate (caught / injected); a replication with nothing
    injected has no rate (NaN), not 0 or a division warning's value."""
    from simharness.stats import misuse_by_kind

    rows = [{"control": "A", "replication": r, "kind": "exfiltration", "injected": inj,
             "prevented": prev, "detected": 0, "damage": 0.0}
            for r, (inj, prev) in enumerate(((4, 1), (0, 0), (2, 2)))]
    out = misuse_by_kind(pd.DataFrame(rows))
    row = out.iloc[0]
    assert row["misuse_caught_rate_mean"] == pytest.approx((1 / 4 + 1) / 2)  # the NaN left out
    assert row["misuse_injected_mean"] == pytest.approx(2.0)
