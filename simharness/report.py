"""`simharness report DIR`: a self-contained `report.html` and a `report.md` (issue 7).

The HTML embeds every figure as a base64 PNG and carries its CSS inline, so it can be mailed or
attached to a design review as one file; it loads nothing from the network. `report.md` has the
same tables and links the figures as relative `plots/*.png` paths. For a sweep the headline
table lists every sweep point; the misuse table and the overview figures show the first point
(as `simharness.plots` does), and the sweep figures show every point.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from simharness import plots
from simharness.metric_catalogue import HEADLINE, METRIC_INFO
from simharness.misuse_catalogue import CATALOGUE, MISUSE_KINDS
from simharness.results import Results, atomic_write_text, load_results

__all__ = ["headline_rows", "misuse_rows", "render_html", "render_markdown", "write_report"]

_DASH = "–"
_CAPTIONS: dict[str, str] = {
    "tradeoff": (
        "Left: exposure against the 99th-percentile decision latency (lower left is better). "
        "Right: share of injected misuse prevented or detected against the false-deny rate "
        "(upper left is better). Bars are 95 % intervals over replications (Wilson for "
        "rates); ringed markers and the dashed step line mark the Pareto front. On a log axis "
        "the tick under the // cut is zero."),
    "latency_cdf": (
        "Decision latency per control: each replication's CDF, averaged over replications; "
        "the legend names a constant latency (a vertical line) and the share of decisions "
        f"taken without a check (a flat stretch from the left). Decisions under {plots.LATENCY_FLOOR_MS:g} ms (e.g. no check at all) are "
        f"drawn at {plots.LATENCY_FLOOR_MS:g} ms."),
    "exposure_timeline": (
        "Cumulative exposure (weighted permission-seconds) over simulated time after warm-up: "
        "mean over replications with a 95 % t band."),
    "misuse_heatmap": (
        "Share of injected misuse instances that were prevented or detected, pooled over "
        "replications, by kind (with OWASP Agentic Top 10 ids) and control. n/a: none "
        "injected."),
}


# --------------------------------------------------------------------------- formatting

def _magnitude(x: float) -> int:
    return math.floor(math.log10(abs(x))) if x and math.isfinite(x) else 0


def _num(v: Any, exponent: bool | None = None) -> str:
    """About three significant digits; exponent form for very large or small values (or as
    `exponent` says, so the numbers of one interval share a style)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(x):
        return _DASH
    if math.isinf(x) or x == 0.0:
        return f"{x:g}"
    mag = _magnitude(x)
    if exponent is None:
        exponent = not -3 <= mag < 5
    if not exponent:
        return f"{x:.{max(0, 2 - mag)}f}"
    mantissa, power = f"{x:.2e}".split("e")
    return f"{mantissa}e{int(power)}"


def _interval(mean: Any, low: Any, high: Any, scale: float = 1.0) -> str:
    """'mean [low, high]', or just the mean when there is no interval (one replication) or
    its ends print the same (as in the terminal tables)."""
    def s(v: Any) -> float:
        return float(v) * scale if v is not None and not pd.isna(v) else math.nan
    m, lo, hi = s(mean), s(low), s(high)
    if math.isnan(lo) or math.isnan(hi):
        return _num(m)
    exponent = any(not -3 <= _magnitude(v) < 5 for v in (m, lo, hi) if v)
    low_s, high_s = _num(lo, exponent), _num(hi, exponent)
    if low_s == high_s:  # no width at the digits shown: the mean says it all
        return _num(m, exponent)
    return f"{_num(m, exponent)} [{low_s}, {high_s}]"


def _duration(seconds: Any) -> str:
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return str(seconds)
    for unit, size in (("h", 3600.0), ("min", 60.0)):
        if s >= size and (s / size).is_integer():
            return f"{int(s / size)} {unit}"
    return f"{s:g} s"


def _value(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


# --------------------------------------------------------------------------- content

@dataclass(frozen=True)
class Table:
    """A table as plain text cells; `numeric` columns are right-aligned."""

    header: list[str]
    rows: list[list[str]]
    numeric: frozenset[int] = frozenset()
    titles: tuple[str, ...] = ()  # optional hover text per row (HTML only)


def _metric_header(metric: str) -> str:
    info = METRIC_INFO.get(metric)
    name = metric.removesuffix("_ms").replace("_", " ")
    if info is None:
        return name
    unit = "%" if info.unit == "share" else info.unit.replace("permission-seconds",
                                                               "permission-s")
    return f"{name} ({unit})"


def headline_rows(res: Results) -> Table:
    """One row per (sweep point, control): n, then each headline metric as mean [low, high]."""
    agg = res.aggregate
    sweep = plots.sweep_columns(agg, res.manifest)
    metrics = [m for m in HEADLINE if f"{m}_mean" in agg.columns]
    header = [*sweep, "control", "n", *(_metric_header(m) for m in metrics)]
    rows = []
    for _, r in agg.iterrows():
        cells = [_value(r[c]) for c in sweep] + [str(r["control"])]
        cells.append(str(r["replications"]) if "replications" in agg.columns else _DASH)
        for m in metrics:
            scale = 100.0 if METRIC_INFO[m].unit == "share" else 1.0
            cells.append(_interval(r[f"{m}_mean"], r.get(f"{m}_ci_low"), r.get(f"{m}_ci_high"),
                                   scale))
        rows.append(cells)
    first_numeric = len(sweep) + 1
    return Table(header, rows, frozenset(range(first_numeric, len(header))))


def paired_rows(res: Results) -> Table:
    """Per (sweep point, control): each headline metric's paired difference to the point's
    reference control (the first that is not `none`), mean [95 % CI] over replications."""
    agg = res.aggregate
    sweep = plots.sweep_columns(agg, res.manifest)
    metrics = [m for m in HEADLINE if f"{m}_diff_mean" in agg.columns]
    refs = {r for r in agg.get("paired_reference", pd.Series(dtype=object)) if isinstance(r, str)}
    # One reference for every row: it is named in the caption (paired_reference), not repeated
    # in a column the table has no width for.
    minus = ["minus"] if len(refs) > 1 else []
    header = [*sweep, "control", *minus, *(_metric_header(m) for m in metrics)]
    rows = []
    for _, r in agg.iterrows():
        ref = r.get("paired_reference")
        if not isinstance(ref, str) or r["control"] == ref:
            continue
        cells = [_value(r[c]) for c in sweep] + [str(r["control"])] + ([ref] if minus else [])
        for m in metrics:
            scale = 100.0 if METRIC_INFO[m].unit == "share" else 1.0
            cells.append(_interval(r[f"{m}_diff_mean"], r.get(f"{m}_diff_ci_low"),
                                   r.get(f"{m}_diff_ci_high"), scale))
        rows.append(cells)
    first_numeric = len(sweep) + 1 + len(minus)
    return Table(header, rows, frozenset(range(first_numeric, len(header))))


def paired_reference(res: Results) -> str:
    """The control every paired difference is taken against ('' if several or none)."""
    refs = {r for r in res.aggregate.get("paired_reference", pd.Series(dtype=object))
            if isinstance(r, str)}
    return refs.pop() if len(refs) == 1 else ""


def paired_note(res: Results) -> str:
    """The caption of the paired-difference table, naming the reference control."""
    ref = paired_reference(res)
    who = f"the reference control, {ref}," if ref else "the reference control (column minus)"
    return (f"Each control minus {who} on the same workloads (common random numbers), paired "
            "by replication: mean difference [95 % interval, Student t over the "
            "per-replication differences]. An interval that excludes 0 is a difference the "
            "replications support.")
HEADLINE_NOTE = ("Mean over replications [95 % interval: Student t over replications; a rate's "
                 "interval is at least the Wilson interval of its pooled counts]; an interval "
                 "whose ends print the same is left out. Task inflation is measured on the "
                 "tasks that completed under both the control and `none`: read it beside task "
                 "success rate.")
NO_MISUSE = "No misuse was injected in this scenario."


def _question(res: Results) -> str:
    sc = res.manifest.get("resolved_scenario") or {}
    return str(sc.get("description") or "(the scenario states no question: give it a "
               "`description`)")


def _misuse_point(res: Results) -> tuple[pd.DataFrame, str]:
    mu = res.misuse
    return plots.first_point(mu, plots.point_columns(mu, plots.MISUSE_COLUMNS))


def misuse_rows(res: Results) -> Table:
    """Per kind: standards ids, then per control 'caught/injected (share)' pooled over
    replications (prevented or detected counts as caught)."""
    mu, _ = _misuse_point(res)
    if mu.empty:
        return Table(["kind", "OWASP ASI", "OWASP NHI", "MITRE ATLAS"], [])
    controls = plots.control_order(mu)
    order = {k: i for i, k in enumerate(MISUSE_KINDS)}
    kinds = sorted(dict.fromkeys(mu["kind"].astype(str)),
                   key=lambda k: (order.get(k, len(order)), k))
    caught = pd.to_numeric(mu["prevented"]) + pd.to_numeric(mu["detected"])
    pooled = (mu.assign(caught=caught)
              .groupby([mu["kind"].astype(str), mu["control"].astype(str)])[
                  ["caught", "injected", "damage"]].sum())
    header = ["kind", "OWASP ASI", "OWASP NHI", "MITRE ATLAS", *controls]
    rows, titles = [], []
    for k in kinds:
        info = CATALOGUE.get(k)
        ids = [", ".join(getattr(info, f)) or _DASH if info else _DASH
               for f in ("asi", "nhi", "atlas")]
        cells = [k, *ids]
        for c in controls:
            if (k, c) not in pooled.index or pooled.loc[(k, c), "injected"] <= 0:
                cells.append("n/a")
                continue
            n = int(pooled.loc[(k, c), "injected"])
            got = int(pooled.loc[(k, c), "caught"])
            cells.append(f"{got}/{n} ({100.0 * got / n:.0f}%)")
        rows.append(cells)
        titles.append(info.summary if info else "")
    return Table(header, rows, frozenset(range(4, len(header))), tuple(titles))


def _scenario_items(res: Results) -> list[tuple[str, str]]:
    """(label, value) pairs describing the scenario, from the manifest's resolved scenario."""
    man = res.manifest
    sc: Mapping[str, Any] = man.get("resolved_scenario") or {}
    items = [("scenario", str(man.get("scenario") or sc.get("name") or _DASH))]
    if sc.get("description"):
        items.append(("description", str(sc["description"])))
    if "horizon" in sc:
        items.append(("horizon", _duration(sc["horizon"])))
    if "warmup" in sc:
        items.append(("warm-up (not measured)", _duration(sc["warmup"])))
    reps = sc.get("replications")
    if reps is None and "replications" in res.aggregate.columns and len(res.aggregate):
        reps = int(res.aggregate["replications"].max())
    items.append(("replications", _DASH if reps is None else str(reps)))
    seed = man.get("root_seed", sc.get("seed"))
    items.append(("root seed", _DASH if seed is None else str(seed)))
    agents = sc.get("agents") or []
    if agents:
        items.append(("agents", "; ".join(
            f"{a.get('name')} ×{a.get('count', 1)} ({a.get('identity', '?')} identity, "
            f"{a.get('platform', '?')})" for a in agents)))
    misuse = sc.get("misuse") or {}
    if misuse:
        kinds = ", ".join(misuse.get("kinds") or {}) or _DASH
        items.append(("misuse", f"rate {_value(misuse.get('rate'))} of tasks; kinds: {kinds}"))
    grid = man.get("grid") or {}
    if grid:
        items.append(("sweep", "; ".join(
            f"{k}: {', '.join(_value(v) for v in vs)}" for k, vs in grid.items())))
    return items


def _controls_table(res: Results) -> Table:
    sc = res.manifest.get("resolved_scenario") or {}
    entries = {c.get("name"): c for c in sc.get("controls") or []}
    names = plots.control_order(res.aggregate) if "control" in res.aggregate.columns else []
    rows = [[n, str(entries.get(n, {}).get("model", _DASH)),
             str(entries.get(n, {}).get("description") or _DASH)] for n in names]
    return Table(["control", "model", "description"], rows)


_PROVENANCE = (("simharness", "simharness"), ("code_version", "code version"),
               ("git_commit", "git commit"), ("python", "python"), ("numpy", "numpy"),
               ("pandas", "pandas"), ("simpy", "simpy"), ("platform", "platform"),
               ("command", "command"), ("scenario_sha256", "scenario sha256"),
               ("root_seed", "root seed"), ("created_utc", "created (UTC)"))


def _provenance(res: Results) -> list[tuple[str, str]]:
    man = res.manifest
    out = []
    for key, label in _PROVENANCE:
        v = man.get(key)
        if isinstance(v, list):
            v = " ".join(map(str, v))
        out.append((label, _DASH if v in (None, "") else str(v)))
    runs = man.get("runs") or {}
    if runs:
        status: dict[str, int] = {}
        for r in runs.values():
            s = str(r.get("status", "?")) if isinstance(r, Mapping) else "?"
            status[s] = status.get(s, 0) + 1
        out.append(("runs", ", ".join(f"{n} {s}" for s, n in sorted(status.items()))))
    return out


def _figures(folder: Path, res: Results) -> list[tuple[str, str]]:
    """(file name, caption) of each figure, in report order."""
    out = []
    params = plots.sweep_columns(res.aggregate, res.manifest)
    point = ""
    if params and len(res.aggregate):
        first = res.aggregate.iloc[0]
        point = " Shown at the first sweep point (" + ", ".join(
            f"{p}={_value(first[p])}" for p in params) + ")."
    for name in plots.FIGURES:
        out.append((f"{name}.png", _CAPTIONS[name] + point))
    metrics = [m for m in HEADLINE if f"{m}_mean" in res.aggregate.columns]
    held = "; other swept parameters at their first value" if len(params) > 1 else ""
    for stem, param, metric in plots.sweep_figure_names(params, metrics):
        label = _metric_header(metric)
        out.append((f"{stem}.png", f"{label[:1].upper()}{label[1:]} against {param}: mean per "
                    f"control with a 95 % band{held}."))
    return [(f, c) for f, c in out if (folder / "plots" / f).is_file()]


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font:15px/1.45 -apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;color:#1d1d1f;
max-width:1240px;margin:2em auto;padding:0 1.2em;background:#fff}
h1{font-size:1.6em;margin:.2em 0 .1em}h2{font-size:1.2em;margin:1.8em 0 .5em;
border-bottom:1px solid #ddd;padding-bottom:.2em}
.sub{color:#666;margin:0 0 1em}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:.84em}
th,td{padding:.26em .5em;border-bottom:1px solid #e4e4e4;text-align:left;vertical-align:top}
th{background:#f4f4f6;font-weight:600;vertical-align:bottom}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tbody tr:nth-child(even){background:#fafafa}
table.kv th{background:none;width:13em;color:#555;font-weight:500;vertical-align:top}
.wide{overflow-x:auto}
.figs{display:flex;flex-wrap:wrap;gap:1.2em 2em;align-items:flex-start}
figure{margin:0 0 1em;max-width:100%}figure img{width:100%;height:auto;border:1px solid #eee}
figcaption{color:#444;font-size:.86em;margin-top:.3em}
.ci{display:block;color:#666;font-size:.9em}
td.c{white-space:nowrap}
.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.35em;
vertical-align:-.05em}
details{margin:.6em 0}summary{cursor:pointer;font-weight:600}
pre{background:#f6f6f8;padding:.8em;overflow-x:auto;font-size:.8em;max-height:40em}
code{font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace;font-size:.92em}
.note{color:#555;font-size:.88em}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_cell(text: str, numeric: bool) -> str:
    # "mean [low, high]": the interval goes on its own, quieter line so wide tables fit.
    if numeric and " [" in text:
        mean, interval = text.split(" [", 1)
        return f'{_e(mean)}<span class="ci">[{_e(interval)}</span>'
    return _e(text)


def _html_header(text: str) -> str:
    # A unit in parentheses wraps under the metric name.
    if " (" in text:
        name, unit = text.split(" (", 1)
        return f"{_e(name)}<br>({_e(unit)}"
    return _e(text)


def _html_table(t: Table, css: str = "", swatch_col: int | None = None,
                swatch_header: bool = False) -> str:
    def th(i: int, h: str) -> str:
        cls = ' class="n"' if i in t.numeric else ""
        label = _swatch(h) + _e(h) if swatch_header and i in t.numeric else _html_header(h)
        return f"<th{cls}>{label}</th>"

    head = "".join(th(i, h) for i, h in enumerate(t.header))
    body = []
    for r, row in enumerate(t.rows):
        title = f' title="{_e(t.titles[r])}"' if r < len(t.titles) and t.titles[r] else ""
        cells = []
        for i, c in enumerate(row):
            cls = ' class="n"' if i in t.numeric else (' class="c"' if i == swatch_col else "")
            text = _swatch(c) + _e(c) if i == swatch_col else _html_cell(c, i in t.numeric)
            cells.append(f"<td{cls}>{text}</td>")
        body.append(f"<tr{title}>{''.join(cells)}</tr>")
    cls = f' class="{css}"' if css else ""
    return (f'<div class="wide"><table{cls}><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _swatch(control: str) -> str:
    # The figure colour next to each control name ties the tables to the figures.
    return f'<span class="swatch" style="background:{_e(plots.control_colour(control))}"></span>'


def _kv(items: Sequence[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in items)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def _display_width(png: bytes, css_px_per_inch: float = 140.0) -> int:
    """On-screen width for a figure: its size in inches at 140 px/in, so 8 pt figure text
    reads like the ~15 px body text (a 300 dpi PNG shown at its pixel size would be huge)."""
    width_px = int.from_bytes(png[16:20], "big")  # the IHDR chunk's width field
    return max(200, round(width_px / plots.DPI * css_px_per_inch))


def render_html(folder: Path, res: Results) -> str:
    """The report as one HTML document (figures inlined as data: URIs)."""
    name = str(res.manifest.get("scenario") or "results")
    headline = headline_rows(res)
    control_col = headline.header.index("control")
    misuse = misuse_rows(res)
    _, where = _misuse_point(res)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>simharness report: {_e(name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>simharness report: {_e(name)}</h1>",
        "<h2>Question</h2>", f'<p class="sub">{_e(_question(res))}</p>',
        "<h2>Scenario</h2>", _kv(_scenario_items(res)),
        _html_table(_controls_table(res), swatch_col=0),
        "<h2>Headline metrics</h2>",
        f'<p class="note">{_e(HEADLINE_NOTE)}</p>',
        _html_table(headline, swatch_col=control_col),
        f"<h2>Misuse by kind{_e(where)}</h2>",
    ]
    if misuse.rows:
        parts += ['<p class="note">Instances prevented or detected / injected, pooled over '
                  "replications. Hover a row for what the kind injects.</p>",
                  _html_table(misuse, swatch_header=True)]
    else:
        parts.append(f"<p>{_e(NO_MISUSE)}</p>")
    parts.append("<h2>Figures</h2>")
    parts.append('<div class="figs">')
    for file, caption in _figures(folder, res):
        png = (folder / "plots" / file).read_bytes()
        data = base64.b64encode(png).decode("ascii")
        parts.append(f'<figure style="width:{_display_width(png)}px">'
                     f'<img src="data:image/png;base64,{data}" alt="{_e(file)}">'
                     f"<figcaption>{_e(caption)}</figcaption></figure>")
    parts.append("</div>")
    paired = paired_rows(res)
    if paired.rows:
        parts += ["<h2>Paired differences</h2>", f'<p class="note">{_e(paired_note(res))}</p>',
                  _html_table(paired, swatch_col=paired.header.index("control"))]
    manifest_json = json.dumps(res.manifest, indent=2, sort_keys=True, default=str)
    parts += [
        "<h2>Provenance</h2>",
        "<details><summary>Manifest: versions, git commit, command, scenario hash</summary>",
        _kv(_provenance(res)),
        "<details><summary>Full manifest.json</summary>",
        f"<pre><code>{_e(manifest_json)}</code></pre></details></details>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- Markdown

def _md_cell(text: Any) -> str:
    # Markdown passes raw HTML through: a scenario's `<script>` must stay text, as in the HTML.
    text = html.escape(str(text), quote=False)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(t: Table, code_cols: Sequence[int] = ()) -> str:
    def cell(i: int, c: str) -> str:
        # Code spans keep names like static_iam from being read as emphasis.
        return f"`{c}`" if i in code_cols and c not in ("", _DASH) else _md_cell(c)

    lines = ["| " + " | ".join(_md_cell(h) for h in t.header) + " |",
             "|" + "|".join("---:" if i in t.numeric else "---" for i in range(len(t.header)))
             + "|"]
    lines += ["| " + " | ".join(cell(i, c) for i, c in enumerate(row)) + " |" for row in t.rows]
    return "\n".join(lines)


def render_markdown(folder: Path, res: Results) -> str:
    """The report as Markdown; figures are relative links to `plots/*.png`."""
    name = str(res.manifest.get("scenario") or "results")
    headline = headline_rows(res)
    _, where = _misuse_point(res)
    misuse = misuse_rows(res)
    out = [f"# simharness report: {_md_cell(name)}", "", "## Question", "",
           _md_cell(_question(res)), "", "## Scenario", "",
           _md_table(Table(["item", "value"], [list(kv) for kv in _scenario_items(res)])), "",
           _md_table(_controls_table(res), code_cols=(0,)), "",
           "## Headline metrics", "", HEADLINE_NOTE, "",
           _md_table(headline, code_cols=(headline.header.index("control"),)), "",
           f"## Misuse by kind{where}", ""]
    out += (["Instances prevented or detected / injected, pooled over replications.", "",
             _md_table(misuse, code_cols=(0,))] if misuse.rows else [NO_MISUSE])
    out += ["", "## Figures", ""]
    for file, caption in _figures(folder, res):
        out += [f"![{Path(file).stem}](plots/{file})", "", f"*{caption}*", ""]
    paired = paired_rows(res)
    if paired.rows:
        code = [paired.header.index(c) for c in ("control", "minus") if c in paired.header]
        out += ["## Paired differences", "", paired_note(res), "",
                _md_table(paired, code_cols=code), ""]
    out += ["## Provenance", "", _md_table(Table(["item", "value"],
                                                        [list(kv) for kv in _provenance(res)])),
            "", "The full manifest is `manifest.json` in this folder.", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- entry point

def _plots_stale(folder: Path, res: Results) -> bool:
    """True if a figure is missing or older than the tables it is drawn from."""
    pngs = [folder / "plots" / f for f in plots.expected_plots(res)]
    if not all(p.is_file() for p in pngs):
        return True
    tables = [p for p in folder.glob("*.csv")]
    newest = max((p.stat().st_mtime for p in tables), default=0.0)
    return min(p.stat().st_mtime for p in pngs) < newest


def write_report(directory: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write `report.html` and `report.md` into a results folder (drawing the plots first if
    any is missing or stale); returns their paths."""
    folder = Path(directory)
    res = load_results(folder)
    if _plots_stale(folder, res):
        plots.plot_dir(folder)
    html_path, md_path = folder / "report.html", folder / "report.md"
    atomic_write_text(html_path, render_html(folder, res))
    atomic_write_text(md_path, render_markdown(folder, res))
    return html_path, md_path
