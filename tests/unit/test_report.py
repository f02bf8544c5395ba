"""report: self-contained HTML and Markdown with the summary, tables, figures and manifest."""

from __future__ import annotations

import json
import math
import os
import re
import shutil

import pytest

import simharness
from simharness import plots, report
from simharness.metric_catalogue import HEADLINE
from simharness.misuse_catalogue import CATALOGUE
from simharness.results import Results

SMALL = ["replications=2", "horizon=1h", "warmup=0"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "baseline"
    simharness.run("baseline", out=out, overrides=SMALL)
    return out


@pytest.fixture(scope="module")
def written(run_dir):
    html_path, md_path = report.write_report(run_dir)
    return html_path.read_text(encoding="utf-8"), md_path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def res(run_dir):
    return simharness.load_results(run_dir)


def _controls(res) -> list[str]:
    return list(dict.fromkeys(res.aggregate["control"].astype(str)))


def test_paths_and_plots(run_dir):
    html_path, md_path = report.write_report(run_dir)
    assert html_path == run_dir / "report.html" and md_path == run_dir / "report.md"
    assert all((run_dir / "plots" / f"{f}.png").is_file() for f in plots.FIGURES)


def test_html_self_contained(written):
    html, _ = written
    assert html.startswith("<!DOCTYPE html>")
    assert html.count('src="data:image/png;base64,') == len(plots.FIGURES)
    # Nothing fetched from anywhere: no remote or relative sources, scripts or stylesheets.
    assert not re.search(r'src="(?!data:)', html)
    assert 'src="http' not in html and "<link" not in html and "<script" not in html
    assert "<style>" in html


def test_html_summary_and_tables(written, res):
    html, _ = written
    for text in ("<h2>Scenario</h2>", "baseline", "mixed enterprise agents", "1 h",
                 "20261129", "support ×20", "<h2>Headline metrics</h2>", "<h2>Misuse by kind",
                 "<h2>Figures</h2>"):
        assert text in html, text
    for control in _controls(res):
        assert f"{control}</td>" in html
    # Every headline metric has a column; intervals are printed as "mean [low, high]".
    for m in HEADLINE:
        assert m.removesuffix("_ms").replace("_", " ") in html
    assert html.count('<span class="ci">[') >= len(_controls(res))
    # Per-kind rows with their standards ids.
    for kind in set(res.misuse["kind"]):
        info = CATALOGUE[kind]
        assert f"<td>{kind}</td>" in html
        assert ", ".join(info.asi) in html


def test_html_manifest_section(written, res):
    html, _ = written
    assert "<details><summary>Manifest" in html
    man = res.manifest
    assert man["scenario_sha256"] in html
    assert man["code_version"] in html and man["python"] in html
    assert "Full manifest.json" in html


def test_markdown(written, res):
    _, md = written
    assert md.startswith("# simharness report: baseline")
    for f in plots.FIGURES:
        assert f"](plots/{f}.png)" in md
    assert "| control | n |" in md
    for control in _controls(res):
        assert f"| `{control}` |" in md
    for kind in set(res.misuse["kind"]):
        assert f"| `{kind}` | {', '.join(CATALOGUE[kind].asi)} |" in md
    assert res.manifest["scenario_sha256"] in md


def test_headline_rows_match_aggregate(res):
    table = report.headline_rows(res)
    assert table.header[:2] == ["control", "n"]
    assert [r[0] for r in table.rows] == _controls(res)
    col = table.header.index("exposure (weighted permission-s)")
    agg = res.aggregate.iloc[0]
    assert table.rows[0][col] == report._interval(agg["exposure_mean"], agg["exposure_ci_low"],
                                                  agg["exposure_ci_high"])
    share = table.header.index("false deny rate (%)")
    last = res.aggregate.iloc[-1]
    assert table.rows[-1][share].startswith(report._num(100 * last["false_deny_rate_mean"]))


def test_misuse_rows_pool_replications(res):
    table = report.misuse_rows(res)
    assert table.header[:4] == ["kind", "OWASP ASI", "OWASP NHI", "MITRE ATLAS"]
    mu = res.misuse
    for row in table.rows:
        kind = row[0]
        for control, cell in zip(table.header[4:], row[4:], strict=True):
            sub = mu[(mu["kind"] == kind) & (mu["control"] == control)]
            caught = int(sub["prevented"].sum() + sub["detected"].sum())
            assert cell.startswith(f"{caught}/{int(sub['injected'].sum())} (")


def test_number_format():
    assert report._num(1.8e8) == "1.80e8"
    assert report._num(0.0654) == "0.0654"
    assert report._num(1172.4) == "1172"
    assert report._num(math.nan) == "–"
    assert report._interval(1.8e8, 1.78e8, 1.83e8) == "1.80e8 [1.78e8, 1.83e8]"
    # One style per interval, even when only one bound crosses the threshold.
    assert report._interval(1.0e5, 9.6e4, 1.04e5) == "1.00e5 [9.60e4, 1.04e5]"
    assert report._interval(0.5, math.nan, math.nan) == "0.500"
    assert report._interval(0.065, 0.06, 0.07, scale=100) == "6.50 [6.00, 7.00]"
    # An interval whose ends print the same is left out (a zero-width interval says nothing).
    assert report._interval(0.0, 0.0, 0.0) == "0"
    assert report._interval(-0.05, -0.05, -0.05) == "-0.0500"
    assert report._interval(1.81e8, 1.8101e8, 1.8104e8) == "1.81e8"
    assert report._interval(1.0, 0.999, 1.001) == "1.00 [0.999, 1.00]"


def test_escapes_text(run_dir, written, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(run_dir, folder)  # keeps mtimes: the plots stay fresh, no redraw
    man_path = folder / "manifest.json"
    man = json.loads(man_path.read_text(encoding="utf-8"))
    man["resolved_scenario"]["description"] = '<script>alert("x")</script> & co'
    man_path.write_text(json.dumps(man), encoding="utf-8")
    html = report.write_report(folder)[0].read_text(encoding="utf-8")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in html


def test_stale_plots_detected(run_dir, written, res):
    assert not report._plots_stale(run_dir, res)
    png = run_dir / "plots" / "tradeoff.png"
    stamp = png.stat()
    try:
        os.utime(png, (1_000_000, 1_000_000))  # older than the tables
        assert report._plots_stale(run_dir, res)
    finally:
        os.utime(png, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))


def test_missing_plots_are_drawn(run_dir, written, tmp_path):
    folder = tmp_path / "missing"
    shutil.copytree(run_dir, folder)
    (folder / "plots" / "misuse_heatmap.png").unlink()
    report.write_report(folder)
    assert (folder / "plots" / "misuse_heatmap.png").is_file()


def test_report_opens_with_the_question_and_ends_with_paired_differences(written, res):
    html, md = written
    question = res.manifest["resolved_scenario"]["description"]
    for text, heading in ((html, "<h2>{}</h2>"), (md, "## {}")):
        sections = [heading.format(s) for s in ("Question", "Scenario", "Headline metrics",
                                                 "Paired differences", "Provenance")]
        at = [text.index(s) for s in sections]
        assert at == sorted(at), "sections out of order"
    assert md.split("## Question\n\n", 1)[1].startswith(question[:40].replace("|", "\\|"))
    # Each paired row reads the aggregate's own difference columns (control - reference).
    table = report.paired_rows(res)
    agg = res.aggregate.set_index("control")
    ref = agg["paired_reference"].dropna().iloc[0]
    assert {r[0] for r in table.rows} == set(agg.index) - {ref}
    row = next(r for r in table.rows if r[0] == "none")
    col = table.header.index(report._metric_header("exposure"))
    d = agg.loc["none"]
    assert row[col] == report._interval(
        d["exposure_diff_mean"], d["exposure_diff_ci_low"], d["exposure_diff_ci_high"])
    assert d["exposure_diff_mean"] > 0  # none holds more authority than the reference
    # One reference for every row: named in the caption, no column repeating it.
    assert "minus" not in table.header and report.paired_reference(res) == ref
    for text in (html, md):
        assert f"Each control minus the reference control, {ref}, on" in text
    # Two references (e.g. two sweep points whose first control differs): a column says which.
    agg2 = res.aggregate.copy()
    other = next(c for c in agg2["control"] if c not in ("none", ref))
    agg2.loc[agg2["control"] == other, "paired_reference"] = "none"
    mixed = report.paired_rows(Results(aggregate=agg2,
                                                          manifest=res.manifest))
    at = mixed.header.index("minus")
    assert {r[0]: r[at] for r in mixed.rows}[other] == "none"
    assert report.paired_reference(Results(aggregate=agg2)) == ""


def test_no_misuse_says_so(tmp_path):
    out = tmp_path / "quiet"
    simharness.run("baseline", out=out, overrides=[*SMALL, "misuse.rate=0"],
                   controls=["none", "jit_per_task"])
    html_path, md_path = report.write_report(out)
    for text in (html_path.read_text(), md_path.read_text()):
        assert report.NO_MISUSE in text and ">nan<" not in text and "| nan" not in text
