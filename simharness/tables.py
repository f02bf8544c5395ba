"""The terminal tables `run` and `sweep` print: the headline metrics as `mean [low, high]`,
safety and cost side by side in two tables that fit 100 columns (rich does the layout; every
other metric is in the results files)."""

from __future__ import annotations

import io
import math
import shutil
from collections.abc import Sequence

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table

from simharness.metric_catalogue import METRIC_INFO
from simharness.stats import STAT_SUFFIXES, few_replications_note

# What a control buys, and what it costs (task_success_rate next to task_inflation: a control
# that fails tasks early must not look fast).
SAFETY = ("misuse_caught_rate", "damage", "exposure")
COST = ("false_deny_rate", "task_success_rate", "task_inflation", "decision_p99_ms")
WIDTH = 100


def number(x: object, percent: bool = False, like: object = None) -> str:
    """About 3 significant digits, no exponent for everyday magnitudes; shares as percent (at
    most two decimals, or as many as `like` has: a bound shows the digits of its mean)."""
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "n/a"
    if percent:
        v *= 100.0
    if math.isinf(v) or v == 0.0:
        return f"{v:g}"
    if percent and like is not None:
        shown = number(like, percent=True)
        if shown not in ("n/a", "0", "inf", "-inf"):
            return f"{v:.{len(shown.partition('.')[2])}f}"
    mag = math.floor(math.log10(abs(v)))
    if percent:  # at most two decimals: 0.002 % of tasks is 0.00 % to a reader
        return f"{v:.{min(2, max(0, 2 - mag))}f}"
    if -3 <= mag < 6:
        return f"{v:.{max(0, 2 - mag)}f}"
    return f"{v:.2e}"


def cell(mean: object, low: object, high: object, percent: bool = False) -> str:
    """`mean [low, high]`; just the mean when the interval is missing or has no width."""
    m = number(mean, percent)
    suffix = "%" if percent and m != "n/a" else ""
    if _missing(low) or _missing(high):
        return m + suffix
    like = mean if percent else None
    lo, hi = number(low, percent, like), number(high, percent, like)
    if lo == hi:  # no width at the digits shown: the mean says it all
        return m + suffix
    return f"{m}{suffix} [{lo}, {hi}]"


def _missing(v: object) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _is_share(metric: str) -> bool:
    info = METRIC_INFO.get(metric)
    return info is not None and info.unit == "share"


def group_columns(agg: pd.DataFrame) -> list[str]:
    """The columns that name a row (sweep parameters, control), not statistics."""
    out = []
    for c in agg.columns:
        if c in ("replications", "paired_reference"):
            continue
        if any(c.endswith(s) and c[: -len(s)] in METRIC_INFO for s in STAT_SUFFIXES):
            continue
        out.append(c)
    return out


def _table(agg: pd.DataFrame, title: str, metrics: Sequence[str]) -> Table | None:
    shown = [m for m in metrics if f"{m}_mean" in agg.columns]
    if not shown:
        return None
    keys = group_columns(agg)
    reps = sorted({int(r) for r in agg["replications"]}) if "replications" in agg.columns else []
    show_n = len(reps) > 1
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  show_edge=False, collapse_padding=True)
    for k in keys:  # a swept dotted path by its last part (the full path is in the caption)
        table.add_column(k.rsplit(".", 1)[-1], no_wrap=True)
    dotted = [k for k in keys if "." in k]
    if dotted:
        table.caption = "; ".join(f"{k.rsplit('.', 1)[-1]} = {k}" for k in dotted)
        table.caption_justify = "left"
    if show_n:
        table.add_column("n", justify="right")
    for m in shown:  # shares show a % in their cells; other units are in the names
        table.add_column(m, justify="right", overflow="fold")
    for _, r in agg.iterrows():
        cells = [str(r[k]) for k in keys]
        if show_n:
            cells.append(str(r["replications"]))
        for m in shown:
            cells.append(cell(r[f"{m}_mean"], r.get(f"{m}_ci_low"), r.get(f"{m}_ci_high"),
                              percent=_is_share(m)))
        table.add_row(*cells)
    return table


def headline_table(agg: pd.DataFrame, width: int | None = None) -> str:
    """Two tables (safety, cost) of the headline metrics, `mean [95 % CI]`, at most `width`
    columns (default: the terminal's, at most 100), and a note when intervals rest on fewer
    than 5 replications."""
    if width is None:
        width = min(shutil.get_terminal_size((WIDTH, 24)).columns, WIDTH)
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, force_terminal=False,
                      highlight=False, soft_wrap=False)
    reps = sorted({int(r) for r in agg["replications"]}) if "replications" in agg.columns else []
    n = f", {reps[0]} replications each" if len(reps) == 1 else ""
    for title, metrics in ((f"Safety: mean [95 % CI]{n}", SAFETY), ("Cost", COST)):
        table = _table(agg, title, metrics)
        if table is not None:
            console.print(table)
    note = few_replications_note(agg)
    if note is not None:
        console.print(note)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"
