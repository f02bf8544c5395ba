"""Figures from a results folder (issue 7): trade-off frontiers, latency CDFs, exposure
timelines, misuse heatmaps and sweep curves.

Every plot function takes DataFrames as `simharness.load_results(DIR)` returns them and gives
back a `matplotlib.figure.Figure` built with the object API (no pyplot state), so the same code
serves notebooks and `simharness plot DIR`. Figures are sized for a paper column (3.5 in; 7 in
for two panels) with 7.5-9 pt text, and each control keeps one colour and marker everywhere.

Sweeps: the non-sweep figures (trade-off, latency, timeline, heatmap) show one sweep point, the
first of the grid (the table's first row), and say which in their title; filter the tables
first to plot another point. A sweep figure with several swept parameters holds the other
parameters at their first value, also named in the title.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import ticker, transforms
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from simharness.metric_catalogue import HEADLINE, METRIC_INFO
from simharness.misuse_catalogue import CATALOGUE, MISUSE_KINDS
from simharness.results import Results, atomic_write_bytes, load_results
from simharness.stats import t_quantile, wilson

__all__ = [
    "CONTROL_COLOURS",
    "FIGURES",
    "control_colour",
    "control_linestyle",
    "control_marker",
    "control_order",
    "expected_plots",
    "exposure_timeline",
    "first_point",
    "latency_cdf",
    "metric_label",
    "misuse_heatmap",
    "plot_dir",
    "point_columns",
    "save_figure",
    "sweep_columns",
    "sweep_figure_names",
    "sweep_metric",
    "tradeoff",
]

# Okabe-Ito colours (safe for the common colour-vision deficiencies); `none`, the reference, grey.
CONTROL_COLOURS: dict[str, str] = {
    "none": "#7f7f7f",
    "static_iam": "#E69F00",
    "sse_only": "#56B4E9",
    "jit_per_task": "#009E73",
    "per_action_policy": "#0072B2",
    "layered": "#CC79A7",
    "task_policy": "#D55E00",
    "data_flow": "#000000",
    "human_approval": "#8C564B",
}
_FALLBACK_COLOURS = ("#BCBD22", "#9467BD", "#17BECF", "#B8860B", "#E377C2", "#1B9E77",
                     "#7570B3")
_MARKERS: dict[str, str] = {"none": "o", "static_iam": "s", "sse_only": "^",
                            "jit_per_task": "D", "per_action_policy": "v", "layered": "P",
                            "task_policy": "X", "data_flow": "h", "human_approval": "*"}
_FALLBACK_MARKERS = ("<", ">", "p", "d", "H")
# sse_only adds a proxy to static_iam's standing role, so their exposure curves coincide (and
# layered often matches a member); data_flow and human_approval restrict no permission, so
# theirs is none's: these are dashed and drawn on top, so the solid line underneath stays
# visible.
_DASHES: dict[str, Any] = {"sse_only": (0, (4, 2)), "layered": (0, (1.5, 1.5)),
                           "data_flow": (0, (5, 1.5)), "human_approval": (0, (2, 1, 0.5, 1))}

FIGURES: tuple[str, ...] = ("tradeoff", "latency_cdf", "exposure_timeline", "misuse_heatmap")
LATENCY_FLOOR_MS = 1e-3
# The non-sweep columns of the long tables (results.py); anything else is a sweep parameter.
LATENCY_COLUMNS = ("control", "replication", "q", "ms")
TIMELINE_COLUMNS = ("control", "replication", "t", "exposure")
MISUSE_COLUMNS = ("control", "replication", "kind", "standards", "injected", "prevented",
                  "detected", "missed", "unreached", "caught_rate", "damage")
DPI = 300
_COL_W, _WIDE_W = 3.5, 7.0  # paper column and two-column widths, inches

_STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "legend.fontsize": 7.5,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.linewidth": 0.4,
    "grid.alpha": 0.35,
    "lines.linewidth": 1.3,
    "lines.markersize": 5,
    "errorbar.capsize": 2,
    "figure.dpi": 100,
}


# --------------------------------------------------------------------------- style

def _stable_index(name: str, n: int) -> int:
    # sha256, not hash(): Python salts str hashes per process, and colours must not change.
    return int(hashlib.sha256(name.encode("utf-8")).hexdigest(), 16) % n


def control_colour(name: str) -> str:
    """The colour of a control: fixed for the built-in names, a stable hash pick otherwise."""
    if name in CONTROL_COLOURS:
        return CONTROL_COLOURS[name]
    return _FALLBACK_COLOURS[_stable_index(name, len(_FALLBACK_COLOURS))]


def control_marker(name: str) -> str:
    """The marker of a control (shapes keep controls apart in greyscale print)."""
    return _MARKERS.get(name) or _FALLBACK_MARKERS[_stable_index(name, len(_FALLBACK_MARKERS))]


def control_linestyle(name: str) -> Any:
    """The line style of a control (solid unless it is a composite that overlaps others)."""
    return _DASHES.get(name, "-")


def _line_style(control: str) -> dict[str, Any]:
    """Colour, dashes and label of a control's line; dashed lines are drawn on top so a
    solid line with the same values cannot hide them."""
    dashes = control_linestyle(control)
    return {"color": control_colour(control), "linestyle": dashes, "label": control,
            "zorder": 2.5 if dashes != "-" else 2.0}


def metric_label(metric: str, log: bool = False, wrap: bool = False) -> str:
    """Axis label with units, e.g. 'decision p99 (ms)'; shares are shown in per cent.
    `wrap` puts a long unit on its own line (for y axes at column width)."""
    info = METRIC_INFO.get(metric)
    text = metric.removesuffix("_ms").replace("_", " ")
    unit = ("%" if info.unit == "share" else info.unit) if info is not None else ""
    unit = unit.replace("permission-seconds", "permission-s")
    unit = ", ".join(u for u in (unit, "log" if log else "") if u)
    if not unit:
        return text
    sep = "\n" if wrap and len(text) + len(unit) > 24 else " "
    return f"{text}{sep}({unit})"


def _is_share(metric: str) -> bool:
    info = METRIC_INFO.get(metric)
    return info is not None and info.unit == "share"


def _styled(fn: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build the figure under the house style (rcParams are read when artists are created)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        with matplotlib.rc_context(_STYLE):  # type: ignore[arg-type]  # typed as Literal keys
            return fn(*args, **kwargs)
    return wrapper


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # Agg whatever the session's backend, so saving never needs a display
    return fig


def _legend_below(fig: Figure, ax: Axes | None = None, ncols: int = 3) -> None:
    """Legend under the axes, outside the data, from the labelled artists of `ax` (or all)."""
    axes = [ax] if ax is not None else fig.axes
    seen: dict[str, Any] = {}
    for a in axes:
        for h, lab in zip(*a.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    # Controls first, annotations (e.g. the Pareto front) last.
    labels = sorted(seen, key=lambda lab: lab == "Pareto front")
    if labels:
        # As many columns as fit the figure's width with the longest label (a label with a
        # note, e.g. 'per_action_policy (≈ jit_per_task)', needs a wider column).
        size = float(matplotlib.rcParams["legend.fontsize"]) / 72.0  # inches
        column = max(len(lab) for lab in labels) * 0.55 * size + 2.9 * size
        fits = max(1, int(fig.get_figwidth() // column))
        fig.legend([seen[lab] for lab in labels], labels, loc="outside lower center",
                   ncols=min(ncols, len(labels), fits), handlelength=1.8, columnspacing=1.2)


# --------------------------------------------------------------------------- sweep points

def sweep_columns(df: pd.DataFrame, manifest: Mapping[str, Any] | None = None) -> list[str]:
    """The swept parameters: `manifest["grid"]` keys, else the aggregate's columns before
    `control` (the results format puts sweep columns there)."""
    grid = (manifest or {}).get("grid") or {}
    if grid:
        return [c for c in grid if c in df.columns]
    if "control" not in df.columns:
        return []
    cols = list(df.columns)
    return [c for c in cols[: cols.index("control")] if c not in ("scenario", "replication")]


def point_columns(df: pd.DataFrame, known: Sequence[str]) -> list[str]:
    """Sweep columns of a long table (timeline, latency, misuse): the columns not in `known`."""
    return [c for c in df.columns if c not in known]


def _same(a: Any, b: Any) -> bool:
    """Equality that treats two missing values as the same sweep value."""
    if np.ndim(a) == 0 and np.ndim(b) == 0 and pd.isna(a) and pd.isna(b):
        return True
    return bool(a == b)


def first_point(df: pd.DataFrame, cols: Sequence[str]) -> tuple[pd.DataFrame, str]:
    """Rows of the first sweep point and a title suffix naming it ('' without a sweep)."""
    cols = [c for c in cols if c in df.columns]
    if not cols or df.empty or len(df.drop_duplicates(cols)) <= 1:
        return df, ""
    first = df.iloc[0]
    mask = np.ones(len(df), dtype=bool)
    for c in cols:
        mask &= np.array([_same(v, first[c]) for v in df[c]], dtype=bool)
    where = ", ".join(f"{c}={_fmt_value(first[c])}" for c in cols)
    return df[mask], f" ({where})"


def _fmt_value(v: Any) -> str:
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v)


def control_order(df: pd.DataFrame) -> list[str]:
    """Controls in order of first appearance (the scenario's order)."""
    return [str(c) for c in dict.fromkeys(df["control"].astype(str))]


# --------------------------------------------------------------------------- log axes

def _log_floor(values: np.ndarray, decades: float = 2.0, below: int = 1) -> float | None:
    """A floor for a log axis if the positive values span >= `decades` decades (or there are
    zeros next to positives spanning one), else None for a linear axis. Zeros are drawn at the
    floor, `below` decades under the smallest positive value. Any negative value: linear."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    pos = v[v > 0]
    if pos.size == 0 or (v < 0).any():  # negatives (e.g. task inflation) need a linear axis
        return None
    span = math.log10(pos.max() / pos.min())
    has_zero = bool((v <= 0).any())
    if span < decades and not (has_zero and span >= 1):
        return None
    return 10.0 ** (math.floor(math.log10(pos.min())) - below)


def _set_log(ax: Axes, which: str, floor: float, top: float, zero_label: bool,
             bottom: float | None = None) -> None:
    """Log scale with decade ticks. With `zero_label` zeros are drawn at `floor`, whose tick
    reads '0' (a log axis cannot show 0 itself); otherwise the axis starts at the decade of
    `bottom`, the smallest value drawn."""
    if not zero_label and bottom is not None and np.isfinite(bottom) and bottom > floor:
        floor = 10.0 ** math.floor(math.log10(bottom))
    lo_exp = round(math.log10(floor))
    hi_exp = max(lo_exp + 1, math.ceil(math.log10(max(top, floor * 10))))
    step = max(1, math.ceil((hi_exp - lo_exp) / 6))  # at most ~7 labelled decades
    ticks = [10.0 ** e for e in range(lo_exp, hi_exp + 1, step)]
    sci = ticker.LogFormatterSciNotation()

    def fmt(x: float, pos: int | None = None) -> str:
        if zero_label and math.isclose(x, floor, rel_tol=1e-9):
            return "0"
        return sci(x, pos)

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis.set_major_locator(ticker.FixedLocator(ticks))
    axis.set_major_formatter(ticker.FuncFormatter(fmt))
    axis.set_minor_locator(ticker.LogLocator(subs=tuple(range(2, 10)), numticks=100))
    axis.set_minor_formatter(ticker.NullFormatter())
    limits = (floor / 10 ** 0.25, max(top * 10 ** 0.3, 10.0 * floor))
    (ax.set_xlim if which == "x" else ax.set_ylim)(*limits)
    if zero_label:
        _break_mark(ax, which, floor * 10 ** 0.5)


def _break_mark(ax: Axes, which: str, at: float) -> None:
    """A '//' on the spine between the '0' tick and the first decade: the axis is cut there."""
    if which == "x":
        trans, xy, rotation = ax.get_xaxis_transform(), (at, 0.0), 0
    else:
        trans, xy, rotation = ax.get_yaxis_transform(), (0.0, at), 90
    ax.text(*xy, "//", transform=trans, ha="center", va="center", rotation=rotation,
            fontsize=7, clip_on=False, zorder=5,
            bbox={"boxstyle": "square,pad=0.05", "facecolor": "white", "edgecolor": "none"})


def _percent(x: float, pos: int | None = None) -> str:
    """A share as a percent with only the digits it needs ('0%', '2.5%', '10%')."""
    return f"{100.0 * x:.4g}%"


def _share_axis(ax: Axes, which: str) -> None:
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_formatter(ticker.FuncFormatter(_percent))


# --------------------------------------------------------------------------- trade-off

def _pareto(x: np.ndarray, y: np.ndarray, minimise_y: bool) -> np.ndarray:
    """Indices of the non-dominated points (x always minimised), sorted by x."""
    sgn = 1.0 if minimise_y else -1.0
    ok = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    front = []
    for i in ok:
        dominated = any(
            x[j] <= x[i] and sgn * y[j] <= sgn * y[i] and (x[j] < x[i] or y[j] != y[i])
            for j in ok if j != i)
        if not dominated:
            front.append(i)
    return np.array(sorted(front, key=lambda i: (x[i], sgn * y[i])), dtype=int)


def _ci(agg: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def col(suffix: str) -> np.ndarray:
        name = f"{metric}{suffix}"
        if name not in agg.columns:
            return np.full(len(agg), np.nan)
        return pd.to_numeric(agg[name], errors="coerce").to_numpy(dtype=float)
    return col("_mean"), col("_ci_low"), col("_ci_high")


def _tradeoff_axis(agg: pd.DataFrame, metric: str
                   ) -> tuple[np.ndarray, np.ndarray, float | None, bool]:
    """One axis of a trade-off panel: plotted means, 2xN error-bar lengths, the log floor
    (None: linear) and whether any mean is zero (drawn at the floor)."""
    mean, lo, hi = _ci(agg, metric)
    # Log where the controls differ by decades (exposure does: a standing role vs none).
    floor = None if _is_share(metric) else _log_floor(mean)
    zeros = bool(np.any(mean <= 0))
    lo = np.where(np.isfinite(lo), lo, mean)  # one replication: no interval, no bar
    hi = np.where(np.isfinite(hi), hi, mean)
    if floor is not None:
        mean, lo, hi = (np.maximum(a, floor) for a in (mean, lo, hi))
    err = np.vstack([np.maximum(mean - lo, 0.0), np.maximum(hi - mean, 0.0)])
    return mean, err, floor, zeros


def _tradeoff_panel(ax: Axes, agg: pd.DataFrame, xm: str, ym: str, minimise_y: bool) -> None:
    x, xerr, xfloor, xzeros = _tradeoff_axis(agg, xm)
    y, yerr, yfloor, yzeros = _tradeoff_axis(agg, ym)
    for i, control in enumerate(agg["control"].astype(str)):
        if not (np.isfinite(x[i]) and np.isfinite(y[i])):
            continue
        ax.errorbar(x[i], y[i], xerr=xerr[:, i:i + 1], yerr=yerr[:, i:i + 1],
                    fmt=control_marker(control), color=control_colour(control),
                    ecolor=control_colour(control), elinewidth=0.9, markersize=5.5,
                    markeredgecolor="white", markeredgewidth=0.5, label=control, zorder=3)

    front = _pareto(x, y, minimise_y)
    if len(front):
        # Ringed markers plus the attainment step line: everything up-right (for exposure)
        # or down-right (for caught) of the line is dominated.
        ax.plot(x[front], y[front], linestyle="none", marker="o", markersize=11,
                markerfacecolor="none", markeredgecolor="black", markeredgewidth=0.8,
                label="Pareto front", zorder=4)
        if len(front) > 1:
            ax.step(x[front], y[front], where="post", color="black", linewidth=0.8,
                    linestyle="--", zorder=2, label="_front line")

    for which, metric, values, err, floor, zeros in (("x", xm, x, xerr, xfloor, xzeros),
                                                     ("y", ym, y, yerr, yfloor, yzeros)):
        if floor is not None:
            _set_log(ax, which, floor, float(np.nanmax(values + err[1])), zero_label=zeros,
                     bottom=float(np.nanmin(values - err[0])))
        elif _is_share(metric):
            _share_axis(ax, which)
    ax.set_xlabel(metric_label(xm, log=xfloor is not None))
    ax.set_ylabel(metric_label(ym, log=yfloor is not None, wrap=True))


@_styled
def tradeoff(aggregate: pd.DataFrame) -> Figure:
    """Two panels: exposure vs decision p99 (both lower is better) and misuse caught vs false
    denials (higher caught, fewer denials is better); 95 % CI error bars; Pareto front ringed."""
    agg, where = first_point(aggregate, sweep_columns(aggregate))
    fig = _figure(_WIDE_W, 3.0)
    ax1, ax2 = fig.subplots(1, 2)
    panels = ((ax1, "decision_p99_ms", "exposure", True, "Exposure vs decision latency",
               "better: lower left"),
              (ax2, "false_deny_rate", "misuse_caught_rate", False,
               "Misuse caught vs false denials", "better: upper left"))
    for ax, xm, ym, minimise_y, title, better in panels:
        _tradeoff_panel(ax, agg, xm, ym, minimise_y)
        ax.set_title(title, pad=11)
        # The direction of "better" as a subtitle: inside the axes it would sit on the data.
        ax.text(0.5, 1.01, better, transform=ax.transAxes, ha="center", va="bottom",
                fontsize=7, color="0.35")
    _legend_below(fig, ncols=6)
    if where:
        fig.suptitle(f"Trade-offs{where}", fontsize=9)
    return fig


# --------------------------------------------------------------------------- latency CDF

def _mixture_cdf(sub: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(latency ms, share of decisions at or below it): each replication's CDF read off its
    quantile grid, averaged over replications at every latency any of them reached.

    Averaged vertically, not per quantile: when some replications have a few decisions at
    0 ms (e.g. requests a proxy never sees) and others none, averaging the quantiles would
    invent a latency no decision had (the mean of 0 and 1.3 ms)."""
    reps = [(np.maximum.accumulate(g["ms"].to_numpy(dtype=float)), g["q"].to_numpy(dtype=float))
            for _, g in sub.sort_values(["replication", "q"]).groupby("replication", sort=True)]
    reps = [(ms, q) for ms, q in reps if len(ms)]
    if not reps:
        return np.array([]), np.array([])
    xs = np.unique(np.concatenate([ms for ms, _ in reps]))
    share = np.zeros(len(xs))
    for ms, q in reps:
        at = np.searchsorted(ms, xs, side="right") - 1  # last quantile at or below x
        share += np.where(at >= 0, q[np.maximum(at, 0)], 0.0)
    return xs, share / len(reps)


def _latency_note(raw: np.ndarray, xs: np.ndarray, share: np.ndarray) -> str:
    """What a vertical or flat stretch of a control's CDF means, for its legend entry."""
    if raw.size and np.allclose(raw, raw[0], rtol=1e-6, atol=1e-9):
        if raw[0] < LATENCY_FLOOR_MS:
            return "no check: 0 ms"
        return f"constant {raw[0]:.3g} ms"
    under = share[xs < LATENCY_FLOOR_MS]
    unchecked = float(under.max()) if under.size else 0.0
    if unchecked > 0.0:
        where = "at 0 ms" if not (xs[xs < LATENCY_FLOOR_MS] > 0).any() else (
            f"under {LATENCY_FLOOR_MS:g} ms")
        return f"{100 * unchecked:.2g} % {where}"
    return ""


@_styled
def latency_cdf(latency: pd.DataFrame) -> Figure:
    """Decision-latency CDF per control: each replication's CDF averaged over replications;
    log x with values below LATENCY_FLOOR_MS drawn at the floor. The legend names constant
    latencies (a vertical line) and the share of decisions taken without a check (a flat
    stretch from the floor)."""
    lat, where = first_point(latency, point_columns(latency, LATENCY_COLUMNS))
    fig = _figure(_COL_W, 3.1)
    ax = fig.subplots()
    top, bottom = LATENCY_FLOOR_MS, math.inf
    for control in control_order(lat) if not lat.empty else []:
        sub = lat[lat["control"].astype(str) == control]
        xs, share = _mixture_cdf(sub)
        keep = share > 0  # the CDF is 0 up to its first step: nothing to draw there
        if not keep.any():
            continue
        note = _latency_note(sub["ms"].to_numpy(dtype=float), xs, share)
        xs, share = xs[keep], share[keep]
        ms = np.maximum(xs, LATENCY_FLOOR_MS)
        top, bottom = max(top, float(ms.max())), min(bottom, float(ms.min()))
        style = _line_style(control)
        if note:
            style["label"] = f"{control} ({note})"
        # Start at 0 % at the first latency, so its step up is drawn (a vertical line for a
        # constant latency).
        ax.plot(np.r_[ms[0], ms], np.r_[0.0, share], drawstyle="steps-post", **style)
    _set_log(ax, "x", LATENCY_FLOOR_MS, top, zero_label=False, bottom=bottom)
    ax.set_ylim(0, 1.02)
    _share_axis(ax, "y")
    ax.set_xlabel(f"decision latency (ms, log)\n(< {LATENCY_FLOOR_MS:g} ms, e.g. no check, "
                  f"drawn at {LATENCY_FLOOR_MS:g})")
    ax.set_ylabel("decisions at or below (%)")
    ax.set_title(f"Decision latency CDF{where}")
    _legend_below(fig, ax)
    return fig


# --------------------------------------------------------------------------- exposure timeline

COINCIDE = 0.01  # curves never further apart than this share of the axis: about a line width


def _coinciding(curves: Sequence[tuple[str, np.ndarray]], tol: float) -> dict[str, str]:
    """{control: the earlier control whose curve is within `tol` of it at every point} (in
    axis units: log10 on a log axis). Drawn alike, the later curve would hide the earlier,
    e.g. two controls granting about the same authority."""
    out: dict[str, str] = {}
    for i, (name, y) in enumerate(curves):
        for other, y0 in curves[:i]:
            if other in out or y.shape != y0.shape:
                continue
            both = np.isfinite(y) & np.isfinite(y0)
            if both.any() and np.array_equal(both, np.isfinite(y) | np.isfinite(y0)) and bool(
                    (np.abs(y - y0)[both] <= tol).all()):
                out[name] = other
                break
    return out


def _mean_band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column: mean and 95 % t interval over the rows (replications)."""
    n = values.shape[0]
    mean = values.mean(axis=0)
    if n < 2:
        return mean, mean, mean
    half = t_quantile(0.975, n - 1) * values.std(axis=0, ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half


@_styled
def exposure_timeline(timeline: pd.DataFrame) -> Figure:
    """Cumulative exposure over simulated time per control: mean over replications with a
    95 % t band. Log y when controls differ by decades: the axis is cut a decade below the
    smallest total, values under the cut are not drawn, and a control with no exposure at all
    is drawn at the bottom, whose tick reads 0."""
    tl, where = first_point(timeline, point_columns(timeline, TIMELINE_COLUMNS))
    fig = _figure(_COL_W, 3.1)
    ax = fig.subplots()
    curves: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for control in control_order(tl) if not tl.empty else []:
        sub = tl[tl["control"].astype(str) == control]
        wide = sub.pivot_table(index="replication", columns="t", values="exposure",
                               aggfunc="mean", sort=True)
        wide = wide.dropna(axis=1)
        if wide.empty:
            continue
        mean, lo, hi = _mean_band(wide.to_numpy(dtype=float))
        curves.append((control, wide.columns.to_numpy(dtype=float) / 3600.0, mean, lo, hi))

    finals = np.array([c[2][-1] for c in curves]) if curves else np.array([])
    floor = _log_floor(finals, below=2)
    if floor is not None:
        # Low enough for every curve's climb from its first non-zero point (a curve must start
        # where its exposure starts, not a decade up), at most 8 decades under the top.
        firsts = [float(c[2][c[2] > 0][0]) for c in curves if (c[2] > 0).any()]
        top_total = float(finals.max()) if finals.size else 1.0
        floor = min(floor, max(10.0 ** math.floor(math.log10(min(firsts))), top_total / 1e8)
                    if firsts else floor)
    zero_drawn = False
    drawn: list[np.ndarray] = []
    top = float(np.nanmax([c[4].max() for c in curves])) if curves else 1.0
    # Curves that would be drawn within a line width of an earlier one, in axis units.
    if floor is not None:
        span = math.log10(top) - math.log10(floor)
        twins = _coinciding([(c[0], np.log10(np.where(c[2] >= floor, c[2], np.nan)))
                             for c in curves], COINCIDE * span)
    else:
        twins = _coinciding([(c[0], c[2]) for c in curves], COINCIDE * top)
    for control, hours, mean, lo, hi in curves:
        colour = control_colour(control)
        style = _line_style(control)
        if control in twins:
            # Drawn on a control whose curve it matches: dashed and on top, so both show.
            style.update(label=f"{control} (≈ {twins[control]})", zorder=2.5)
            if style["linestyle"] == "-":
                style["linestyle"] = (0, (4, 2))
        band = True
        if floor is not None:
            if np.all(mean < floor):
                mean, band, zero_drawn = np.full_like(mean, floor), False, True
            else:
                # A log axis cannot show 0: a line starts at its first value above the floor.
                below = mean < floor
                mean = np.where(below, np.nan, mean)
                lo = np.where(below, np.nan, np.maximum(lo, floor))
                hi = np.where(below, np.nan, hi)
        ax.plot(hours, mean, **style)
        drawn.append(lo if band else mean)
        if band and np.any(hi > lo):
            ax.fill_between(hours, lo, hi, color=colour, alpha=0.2, linewidth=0,
                            label=f"_{control} 95% CI")
    ylabel = f"cumulative {metric_label('exposure', log=floor is not None, wrap=True)}"
    if floor is not None:
        bottom = float(np.nanmin(np.concatenate(drawn))) if drawn else None
        _set_log(ax, "y", floor, top, zero_label=zero_drawn, bottom=bottom)
    else:
        ax.set_ylim(bottom=0)
    if curves:
        start = min(c[1][0] for c in curves)  # the timeline starts at the end of the warm-up
        ax.set_xlim(0.0, max(c[1][-1] for c in curves))
        if start > 0:
            ax.axvspan(0.0, start, color="0.88", linewidth=0, zorder=0,
                       label="warm-up (not measured)")
    ax.set_xlabel("simulated time (h)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"Exposure over time{where}")
    _legend_below(fig, ax)
    return fig


# --------------------------------------------------------------------------- misuse heatmap

def _kind_label(kind: str) -> str:
    info = CATALOGUE.get(kind)
    return f"{kind} ({', '.join(info.asi)})" if info is not None and info.asi else kind


@_styled
def misuse_heatmap(misuse: pd.DataFrame) -> Figure:
    """Kind x control: share of injected instances prevented or detected, pooled over
    replications ((prevented + detected) / injected), annotated; rows carry OWASP ASI ids."""
    mu, where = first_point(misuse, point_columns(misuse, MISUSE_COLUMNS))
    controls = control_order(mu) if not mu.empty else []
    order = {k: i for i, k in enumerate(MISUSE_KINDS)}
    kinds = sorted(dict.fromkeys(mu["kind"].astype(str)) if not mu.empty else [],
                   key=lambda k: (order.get(k, len(order)), k))
    pooled = (mu.assign(caught=pd.to_numeric(mu["prevented"]) + pd.to_numeric(mu["detected"]))
              .groupby([mu["kind"].astype(str), mu["control"].astype(str)])[["caught", "injected"]]
              .sum()) if not mu.empty else pd.DataFrame(columns=["caught", "injected"])
    share = np.full((len(kinds), len(controls)), np.nan)
    for i, k in enumerate(kinds):
        for j, c in enumerate(controls):
            if (k, c) in pooled.index and pooled.loc[(k, c), "injected"] > 0:
                share[i, j] = pooled.loc[(k, c), "caught"] / pooled.loc[(k, c), "injected"]

    counts = np.zeros((len(kinds), len(controls)))
    for i, k in enumerate(kinds):
        for j, c in enumerate(controls):
            if (k, c) in pooled.index:
                counts[i, j] = pooled.loc[(k, c), "injected"]

    width = max(_COL_W, 2.3 + 0.78 * len(controls))
    fig = _figure(width, 1.3 + 0.36 * max(len(kinds), 1))
    ax = fig.subplots()
    ax.grid(False)
    ax.set_title(f"Misuse caught by kind{where}")
    if not kinds:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no misuse injected", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
        return fig
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#e6e6e6")
    im = ax.imshow(np.ma.masked_invalid(share), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto",
                   interpolation="nearest")
    for i in range(len(kinds)):
        for j in range(len(controls)):
            v = share[i, j]
            if np.isnan(v):
                text, colour = "n/a", "0.4"
            else:
                # Rounding must not print 100 % for 199/200 or 0 % for 1/200.
                pct = 100.0 * v
                text = (f"{pct:.0f}%" if pct in (0.0, 100.0) or 1.0 <= pct <= 99.0
                        else ("<1%" if pct < 1.0 else ">99%"))
                # The 95 % interval of the pooled share (Wilson; one-sided at 0 or n).
                n = counts[i, j]
                _, lo, hi = wilson(round(v * n), n)
                text += f"\n[{100 * lo:.0f}, {100 * hi:.0f}]"
                colour = "black" if v > 0.6 else "white"  # viridis turns light above ~0.6
            ax.text(j, i, text, ha="center", va="center", fontsize=6.5, color=colour,
                    linespacing=1.1)
    ax.set_xticks(range(len(controls)), controls, rotation=30, ha="right",
                  rotation_mode="anchor")
    def n_label(row: np.ndarray) -> str:
        seen = row[row > 0]
        if not seen.size:
            return "n=0"
        lo, hi = int(seen.min()), int(seen.max())
        return f"n={lo}" if lo == hi else f"n={lo}-{hi}"

    ax.set_yticks(range(len(kinds)), [f"{_kind_label(k)}, {n_label(counts[i])}"
                                      for i, k in enumerate(kinds)])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    cbar = fig.colorbar(im, ax=ax, shrink=0.9, aspect=25, pad=0.02)
    cbar.ax.yaxis.set_major_formatter(ticker.FuncFormatter(_percent))
    cbar.set_label("prevented or detected [95 % CI]; n = instances injected")
    cbar.outline.set_visible(False)
    return fig


# --------------------------------------------------------------------------- sweeps

@_styled
def sweep_metric(aggregate: pd.DataFrame, param: str, metric: str) -> Figure:
    """`metric` (mean, 95 % CI band) against the swept `param`, one line per control. Other
    swept parameters are held at their first value."""
    if param not in aggregate.columns:
        raise ValueError(f"{param!r} is not a column of the aggregate table")
    if f"{metric}_mean" not in aggregate.columns:
        raise ValueError(f"the aggregate table has no {metric}_mean column")
    others = [c for c in sweep_columns(aggregate) if c != param]
    agg = aggregate
    held = []
    for c in others:
        first = agg[c].iloc[0]
        agg = agg[[_same(v, first) for v in agg[c]]]
        held.append(f"{c}={_fmt_value(first)}")

    xs_raw = list(dict.fromkeys(agg[param]))
    numeric = all(isinstance(v, int | float | np.integer | np.floating) and not isinstance(
        v, bool) for v in xs_raw)
    fig = _figure(_COL_W, 3.0)
    ax = fig.subplots()
    position = {v: float(v) if numeric else float(i) for i, v in enumerate(xs_raw)}
    means = pd.to_numeric(agg[f"{metric}_mean"], errors="coerce").to_numpy(dtype=float)
    y_floor = None if _is_share(metric) else _log_floor(means)
    controls = control_order(agg)
    n = len(controls)
    for i, control in enumerate(controls):
        sub = agg[agg["control"].astype(str) == control]
        x = np.array([position[v] for v in sub[param]])
        mean, lo, hi = _ci(sub, metric)
        idx = np.argsort(x, kind="stable")
        x, mean, lo, hi = x[idx], mean[idx], lo[idx], hi[idx]
        if y_floor is not None:
            mean, lo, hi = (np.maximum(a, y_floor) for a in (mean, lo, hi))
        colour = control_colour(control)
        # Equal values are common (two controls catching 100 %): dodge each control by a
        # couple of points sideways and shrink later markers, so every shape stays visible.
        dodge = transforms.offset_copy(ax.transData, fig=fig, x=2.0 * (i - (n - 1) / 2),
                                       y=0.0, units="points")
        (line,) = ax.plot(x, mean, marker=control_marker(control),
                          markersize=max(3.5, 6.0 - 0.5 * i), markeredgecolor="white",
                          markeredgewidth=0.4, **_line_style(control))
        band = np.isfinite(lo) & np.isfinite(hi)
        poly = ax.fill_between(x, np.where(band, lo, mean), np.where(band, hi, mean),
                               color=colour, alpha=0.13, linewidth=0,
                               label=f"_{control} 95% CI")
        # Set after plotting: the data limits were computed in plain data coordinates.
        line.set_transform(dodge)
        poly.set_transform(dodge)
    ylabel = metric_label(metric, log=y_floor is not None, wrap=True)
    if y_floor is not None:
        _, lows, highs = _ci(agg, metric)
        top = float(np.nanmax(np.concatenate([means, highs])))
        bottom = float(np.nanmin(np.maximum(np.concatenate([means, lows]), y_floor)))
        _set_log(ax, "y", y_floor, top, zero_label=bool(np.any(means <= 0)), bottom=bottom)
    elif _is_share(metric):
        _share_axis(ax, "y")
    xs = np.array(sorted(position.values()))
    if numeric and len(xs) > 1 and xs.min() > 0 and xs.max() / xs.min() >= 100:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(list(position.values()), [str(v) for v in xs_raw])
    elif len(xs) <= 8:
        ax.set_xticks(xs, [_fmt_value(v) for v in sorted(xs_raw)])
        ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlabel(f"{param_label(param)}\n({param})")
    ax.set_ylabel(ylabel)
    title = f"{metric.removesuffix('_ms').replace('_', ' ').capitalize()} vs {param_label(param)}"
    ax.set_title(title + (f" ({', '.join(held)})" if held else ""))
    _legend_below(fig, ax)
    return fig


def param_label(param: str) -> str:
    """A swept parameter in words: 'misuse.rate' -> 'misuse rate',
    'controls.jit_per_task.ttl' -> 'jit_per_task ttl', 'agents.0.count' -> 'agents 0 count'."""
    parts = param.split(".")
    if parts[0] == "controls" and len(parts) > 2:
        return f"{parts[1]} " + " ".join(p.replace("_", " ") for p in parts[2:])
    return " ".join(p.replace("_", " ") for p in parts)


# --------------------------------------------------------------------------- files

def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = DPI) -> Path:
    """Write a PNG atomically; no Software/time metadata, so equal figures give equal bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "param"


def sweep_figure_names(params: Sequence[str], metrics: Sequence[str] = HEADLINE
                       ) -> list[tuple[str, str, str]]:
    """(file stem, param, metric) of each sweep figure."""
    return [(f"sweep_{_safe(p)}_{m}", p, m) for p in params for m in metrics]


def expected_plots(res: Results) -> list[str]:
    """File names `plot_dir` writes for these results (used to find missing plots)."""
    params = sweep_columns(res.aggregate, res.manifest)
    names = [f"{f}.png" for f in FIGURES]
    metrics = [m for m in HEADLINE if f"{m}_mean" in res.aggregate.columns]
    return names + [f"{stem}.png" for stem, _, _ in sweep_figure_names(params, metrics)]


@contextmanager
def _closing(fig: Figure) -> Iterator[Figure]:
    try:
        yield fig
    finally:
        fig.clear()  # drop the artists now; sweeps make many figures


def plot_dir(directory: str | os.PathLike[str]) -> list[Path]:
    """Write `DIR/plots/*.png` for a results folder and return their paths.

    Always the four overview figures (for a sweep: at its first point), plus for a sweep
    `sweep_<param>_<metric>.png` for every swept parameter and headline metric.
    """
    folder = Path(directory)
    res = load_results(folder)
    out = folder / "plots"
    makers: list[tuple[str, Callable[[], Figure]]] = [
        ("tradeoff", lambda: tradeoff(res.aggregate)),
        ("latency_cdf", lambda: latency_cdf(res.latency)),
        ("exposure_timeline", lambda: exposure_timeline(res.timeline)),
        ("misuse_heatmap", lambda: misuse_heatmap(res.misuse)),
    ]
    params = sweep_columns(res.aggregate, res.manifest)
    metrics = [m for m in HEADLINE if f"{m}_mean" in res.aggregate.columns]
    for stem, param, metric in sweep_figure_names(params, metrics):
        makers.append((stem, functools.partial(sweep_metric, res.aggregate, param, metric)))
    paths = []
    for stem, make in makers:
        with _closing(make()) as fig:
            paths.append(save_figure(fig, out / f"{stem}.png"))
    return paths
