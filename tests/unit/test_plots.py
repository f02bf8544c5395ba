"""plots: each figure's axes, series, scales and labels on a small real run, and plot_dir."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

import simharness
from simharness import plots
from simharness.metric_catalogue import HEADLINE
from simharness.metrics import LATENCY_QUANTILES
from simharness.misuse_catalogue import CATALOGUE

SMALL = ["replications=2", "horizon=1h", "warmup=0"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("plots") / "baseline"
    simharness.run("baseline", out=out, overrides=SMALL)
    return out


@pytest.fixture(scope="module")
def res(run_dir):
    return simharness.load_results(run_dir)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("plots") / "sweep"
    simharness.sweep("baseline", {"misuse.rate": [0.02, 0.1]},
                     overrides=["replications=2", "horizon=30m", "warmup=0"], out=out)
    return out


def _controls(res) -> list[str]:
    return list(dict.fromkeys(res.aggregate["control"].astype(str)))


def _legend_labels(fig: Figure) -> list[str]:
    assert len(fig.legends) == 1
    return [t.get_text() for t in fig.legends[0].get_texts()]


# --------------------------------------------------------------------------- style

def test_colours_fixed_and_stable():
    assert plots.control_colour("jit_per_task") == plots.CONTROL_COLOURS["jit_per_task"]
    assert len(set(plots.CONTROL_COLOURS.values())) == len(plots.CONTROL_COLOURS)
    custom = plots.control_colour("my_custom_control")
    assert custom == plots.control_colour("my_custom_control")
    assert custom not in plots.CONTROL_COLOURS.values()
    assert plots.control_marker("none") != plots.control_marker("static_iam")


def test_metric_label_units():
    assert plots.metric_label("decision_p99_ms") == "decision p99 (ms)"
    assert plots.metric_label("false_deny_rate") == "false deny rate (%)"
    assert plots.metric_label("exposure", log=True, wrap=True) == (
        "exposure\n(weighted permission-s, log)")


def test_pareto_front():
    x = np.array([0.0, 0.05, 10.0, 0.02, 6.0])
    y = np.array([1e8, 5e7, 5e7, 1e5, 0.0])
    assert plots._pareto(x, y, minimise_y=True).tolist() == [0, 3, 4]
    caught = np.array([0.01, 0.1, 0.5, 1.0, 1.0])
    fd = np.array([0.0, 0.0, 0.0, 0.0, 0.06])
    assert plots._pareto(fd, caught, minimise_y=False).tolist() == [3]


def test_log_floor():
    assert plots._log_floor(np.array([0.0, 0.02, 10.0])) == pytest.approx(1e-3)
    assert plots._log_floor(np.array([1.0, 2.0, 3.0])) is None
    assert plots._log_floor(np.array([-0.1, 0.01, 100.0])) is None  # negatives: linear
    assert plots._log_floor(np.array([0.0, 0.0])) is None


def test_first_point_and_sweep_columns():
    agg = pd.DataFrame({"p": [1, 1, 2, 2], "control": ["a", "b", "a", "b"], "x_mean": range(4)})
    assert plots.sweep_columns(agg) == ["p"]
    assert plots.sweep_columns(agg, {"grid": {"p": [1, 2]}}) == ["p"]
    sub, where = plots.first_point(agg, ["p"])
    assert sub["control"].tolist() == ["a", "b"] and where == " (p=1)"
    same, none = plots.first_point(agg.iloc[:2], ["p"])
    assert len(same) == 2 and none == ""


# --------------------------------------------------------------------------- figures

def test_tradeoff(res):
    fig = plots.tradeoff(res.aggregate)
    controls = _controls(res)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    ax1, ax2 = fig.axes
    assert ax1.get_title() == "Exposure vs decision latency"
    assert ax2.get_title() == "Misuse caught vs false denials"
    assert ax1.get_xlabel() == "decision p99 (ms, log)"
    assert ax1.get_ylabel().startswith("exposure\n(weighted permission-s")
    assert ax2.get_xlabel() == "false deny rate (%)"
    assert ax2.get_ylabel() == "misuse caught rate (%)"
    # Exposure and p99 span decades in this run (static grants against per-task authority).
    assert ax1.get_xscale() == "log" and ax1.get_yscale() == "log"
    assert ax2.get_xscale() == "linear"
    fmt = ax2.yaxis.get_major_formatter()
    assert [fmt(v) for v in (0.0, 0.05, 0.025, 1.0)] == ["0%", "5%", "2.5%", "100%"]
    for ax in (ax1, ax2):
        # One errorbar container (point + CI bars) per control, labelled with its name.
        assert [c.get_label() for c in ax.containers] == controls
        front = [ln for ln in ax.get_lines() if ln.get_label() == "Pareto front"]
        assert len(front) == 1 and 1 <= len(front[0].get_xdata()) <= len(controls)
    assert _legend_labels(fig) == [*controls, "Pareto front"]
    # A control with zero exposure (e.g. a deny-all policy) sits on the floor, whose tick
    # reads "0".
    agg = res.aggregate.copy()
    agg.loc[agg.control == "per_action_policy",
            ["exposure_mean", "exposure_ci_low", "exposure_ci_high"]] = 0.0
    zero = plots.tradeoff(agg).axes[0]
    floor = zero.yaxis.get_major_locator()()[0]
    assert zero.yaxis.get_major_formatter()(floor, 0) == "0"
    # Each control keeps its colour.
    for c in ax1.containers:
        assert c.lines[0].get_color() == plots.control_colour(c.get_label())


def test_latency_cdf(res):
    fig = plots.latency_cdf(res.latency)
    controls = _controls(res)
    (ax,) = fig.axes
    assert ax.get_title() == "Decision latency CDF"
    assert ax.get_xscale() == "log"
    assert "0.001" in ax.get_xlabel() and "ms" in ax.get_xlabel()
    assert ax.get_ylabel() == "decisions at or below (%)"
    lines = ax.get_lines()
    assert [_name(ln.get_label()) for ln in lines] == controls
    for ln in lines:
        q = np.asarray(ln.get_ydata())
        ms = np.asarray(ln.get_xdata())
        # From 0 % at the first latency, up its first step, to 100 %.
        assert q[0] == 0.0 and q[1] > 0.0 and q[-1] == pytest.approx(1.0)
        assert np.all(np.diff(q) >= 0)
        assert np.all(np.diff(ms) >= 0) and ms.min() >= plots.LATENCY_FLOOR_MS
        assert ln.get_color() == plots.control_colour(_name(ln.get_label()))
    by = {_name(ln.get_label()): np.asarray(ln.get_xdata()) for ln in lines}
    assert np.all(by["none"] == plots.LATENCY_FLOOR_MS)  # zero latency drawn at the floor
    labels = _legend_labels(fig)
    assert [_name(lab) for lab in labels] == controls
    assert "none (no check: 0 ms)" in labels
    assert "static_iam (constant 0.05 ms)" in labels  # the profile's local check


def _name(label: str) -> str:
    """The control in a legend label ('sse_only (0.5 % at 0 ms)' -> 'sse_only')."""
    return label.split(" (")[0]


def _latency_rows(control: str, per_rep: list[np.ndarray]) -> list[dict]:
    """Rows of latency.csv for one control: each replication's quantiles on the grid."""
    return [{"control": control, "replication": r, "q": q, "ms": v}
            for r, ms in enumerate(per_rep)
            for q, v in zip(LATENCY_QUANTILES, np.quantile(ms, LATENCY_QUANTILES),
                            strict=True)]


def test_latency_cdf_averages_replications_cdfs_and_names_unchecked_share():
    # Replication 0: 21 of its 1001 decisions unchecked (0 ms, quantiles 0-2 %), the rest
    # 1-3 ms; replication 1: none unchecked. Averaging quantiles would put decisions at
    # (0 + ~1) / 2 ms, which none had; the average CDF has 1 % at 0 ms and jumps at 1 ms.
    body = np.linspace(1.0, 3.0, 1001)
    rep0 = np.r_[np.zeros(21), body[21:]]
    rows = _latency_rows("sse_only", [rep0, body])
    rows += _latency_rows("static_iam", [np.full(1000, 0.05), np.full(1000, 0.05)])
    fig = plots.latency_cdf(pd.DataFrame(rows))
    (ax,) = fig.axes
    by = {_name(ln.get_label()): ln for ln in ax.get_lines()}
    sse = by["sse_only"]
    assert sse.get_label() == "sse_only (1 % at 0 ms)"
    ms, share = np.asarray(sse.get_xdata()), np.asarray(sse.get_ydata())
    # No latency between the 0 ms atom (drawn at the floor) and the fastest checked decision.
    assert np.all((ms == plots.LATENCY_FLOOR_MS) | (ms >= 1.0))
    # Share at or below 2 ms: per replication, the largest grid quantile at or below it.
    q = LATENCY_QUANTILES
    expect = np.mean([q[np.quantile(r, q) <= 2.0].max() for r in (rep0, body)])
    at = np.searchsorted(ms, 2.0, side="right") - 1
    assert share[at] == pytest.approx(expect)
    assert share[1] == pytest.approx(0.01)  # the unchecked share, at the floor
    assert by["static_iam"].get_label() == "static_iam (constant 0.05 ms)"
    assert np.all(np.asarray(by["static_iam"].get_xdata()) == pytest.approx(0.05))


def test_exposure_timeline(res):
    fig = plots.exposure_timeline(res.timeline)
    controls = _controls(res)
    (ax,) = fig.axes
    assert ax.get_title() == "Exposure over time"
    assert ax.get_xlabel() == "simulated time (h)"
    assert ax.get_ylabel().startswith("cumulative exposure")
    lines = ax.get_lines()
    assert [_name(ln.get_label()) for ln in lines] == controls
    # sse_only grants static_iam's standing role: its curve is static_iam's, and says so.
    assert "sse_only (≈ static_iam)" in _legend_labels(fig)
    hours = np.asarray(lines[0].get_xdata())
    assert hours[0] == pytest.approx(0.0) and hours[-1] == pytest.approx(1.0)
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert bands and all(b.get_label().startswith("_") for b in bands)
    assert {b.get_label().removeprefix("_").removesuffix(" 95% CI") for b in bands} <= set(
        controls)
    # Mean cumulative exposure at the end matches the aggregate (exposure_mean).
    agg = res.aggregate.set_index("control")["exposure_mean"]
    end = {_name(ln.get_label()): np.asarray(ln.get_ydata())[-1] for ln in lines}
    assert end["none"] == pytest.approx(agg["none"], rel=1e-6)
    assert ax.get_yscale() == "log"


def test_misuse_heatmap(res):
    fig = plots.misuse_heatmap(res.misuse)
    controls = _controls(res)
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # heatmap + colour bar
    assert ax.get_title() == "Misuse caught by kind"
    (img,) = ax.images
    kinds = [k for k in CATALOGUE if k in set(res.misuse["kind"])]
    data = img.get_array()
    assert data.shape == (len(kinds), len(controls))
    ylabels = [t.get_text() for t in ax.get_yticklabels()]
    injected = res.misuse.groupby(["kind", "control"])["injected"].sum()
    for y, k in zip(ylabels, kinds, strict=True):
        n = injected[k]
        shown = f"n={n.min()}" if n.min() == n.max() else f"n={n.min()}-{n.max()}"
        assert y == f"{k} ({', '.join(CATALOGUE[k].asi)}), {shown}"
    assert all("ASI0" in y for y in ylabels)
    assert [t.get_text() for t in ax.get_xticklabels()] == controls
    assert len(ax.texts) == len(kinds) * len(controls)
    mu = res.misuse
    for i, k in enumerate(kinds):
        for j, c in enumerate(controls):
            sub = mu[(mu["kind"] == k) & (mu["control"] == c)]
            expect = (sub["prevented"].sum() + sub["detected"].sum()) / sub["injected"].sum()
            assert data[i, j] == pytest.approx(expect)
    assert fig.axes[1].get_ylabel().startswith("prevented or detected [95 % CI]")
    # Each cell: the share, then its Wilson interval on the pooled counts.
    cell = ax.texts[0].get_text().split("\n")
    assert len(cell) == 2 and cell[1].startswith("[") and cell[1].endswith("]")


def test_sweep_metric(sweep_dir):
    r = simharness.load_results(sweep_dir)
    controls = _controls(r)
    fig = plots.sweep_metric(r.aggregate, "misuse.rate", "false_deny_rate")
    (ax,) = fig.axes
    assert ax.get_title() == "False deny rate vs misuse rate"
    assert ax.get_xlabel() == "misuse rate\n(misuse.rate)"  # in words, then the exact path
    assert plots.param_label("controls.per_action_policy.pdp.service_time.p99") == (
        "per_action_policy pdp service time p99")
    assert ax.get_ylabel() == "false deny rate (%)"
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == controls
    assert all(np.allclose(ln.get_xdata(), [0.02, 0.1]) for ln in lines)
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == len(controls)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.02", "0.1"]
    with pytest.raises(ValueError, match="no_such_metric"):
        plots.sweep_metric(r.aggregate, "misuse.rate", "no_such_metric")


def test_sweep_overview_uses_first_point(sweep_dir):
    r = simharness.load_results(sweep_dir)
    fig = plots.tradeoff(r.aggregate)
    assert fig.get_suptitle() == "Trade-offs (misuse.rate=0.02)"
    assert [c.get_label() for c in fig.axes[0].containers] == _controls(r)
    assert plots.latency_cdf(r.latency).axes[0].get_title().endswith("(misuse.rate=0.02)")


# --------------------------------------------------------------------------- files

def test_plot_dir(run_dir, res, tmp_path):
    paths = plots.plot_dir(run_dir)
    assert [p.name for p in paths] == [f"{f}.png" for f in plots.FIGURES]
    assert all(p.parent == run_dir / "plots" for p in paths)
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and b"Software" not in data
    # Deterministic: the same figure drawn again gives the same bytes (no timestamps).
    again = plots.save_figure(plots.tradeoff(res.aggregate), tmp_path / "tradeoff.png")
    assert again.read_bytes() == (run_dir / "plots" / "tradeoff.png").read_bytes()


def test_plot_dir_sweep(sweep_dir):
    names = [p.name for p in plots.plot_dir(sweep_dir)]
    sweep = [f"sweep_misuse.rate_{m}.png" for m in HEADLINE]
    assert names == [*(f"{f}.png" for f in plots.FIGURES), *sweep]
    assert all((sweep_dir / "plots" / n).is_file() for n in names)


def test_timeline_lines_start_where_exposure_starts_and_warmup_is_marked():
    rows = []
    for r in range(3):
        for t, big, small in ((900.0, 0.0, 0.0), (1200.0, 2e6, 800.0 + r), (1500.0, 4e6, 3000.0),
                              (28800.0, 1.8e8, 1.3e5)):
            rows += [{"control": "none", "replication": r, "t": t, "exposure": big},
                     {"control": "jit_per_task", "replication": r, "t": t, "exposure": small}]
    fig = plots.exposure_timeline(pd.DataFrame(rows))
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    jit = next(ln for ln in ax.get_lines() if ln.get_label() == "jit_per_task")
    y = np.asarray(jit.get_ydata(), dtype=float)
    assert math.isnan(y[0]) and y[1] == pytest.approx(801.0)  # the first non-zero point drawn
    assert ax.get_ylim()[0] <= 801.0
    assert ax.get_xlim()[0] == 0.0  # the warm-up (0-0.25 h) is shown, shaded and named
    assert "warm-up (not measured)" in _legend_labels(fig)


def test_timeline_curve_that_matches_an_earlier_one_is_dashed_on_top():
    # Log axis over 1e3..1e8 (5 decades, plus margins): b 2.3 % above a (0.01 decades, under
    # a line width), c a factor 1.5 above a (0.18 decades: visible), d the top curve.
    rows = []
    for r in range(2):
        for t, y in ((900.0, 1e3), (1800.0, 5e3), (3600.0, 1e4)):
            rows += [{"control": "a_ctl", "replication": r, "t": t, "exposure": y},
                     {"control": "b_ctl", "replication": r, "t": t, "exposure": y * 1.023},
                     {"control": "c_ctl", "replication": r, "t": t, "exposure": y * 1.5},
                     {"control": "d_ctl", "replication": r, "t": t, "exposure": y * 1e4}]
    fig = plots.exposure_timeline(pd.DataFrame(rows))
    assert fig.axes[0].get_yscale() == "log"
    by = {_name(ln.get_label()): ln for ln in fig.axes[0].get_lines()}
    assert by["b_ctl"].get_label() == "b_ctl (≈ a_ctl)"
    assert by["b_ctl"].get_linestyle() != "-" and by["b_ctl"].get_zorder() > by[
        "a_ctl"].get_zorder()
    assert by["c_ctl"].get_label() == "c_ctl" and by["c_ctl"].get_linestyle() == "-"
    # The tolerance is absolute, in axis units; curves must cover the same points.
    y = np.array([np.nan, 1.0, 2.0])
    assert plots._coinciding([("a", y), ("b", y + 0.04)], 0.05) == {"b": "a"}
    assert plots._coinciding([("a", y), ("b", y + 0.06)], 0.05) == {}
    assert plots._coinciding([("a", y), ("b", np.array([0.0, 1.0, 2.0]))], 0.05) == {}
