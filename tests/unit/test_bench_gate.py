"""Issue 21 item 1: the decision-path gate cannot pass while comparing nothing, and bad input
(baseline or limit) exits 2 with one line, never 1 (the code of a regression) or a traceback."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simharness import bench
from simharness.cli import app

ROOT = Path(__file__).resolve().parents[2]


def _result(**ratios: float) -> dict:
    return {"results": [{"name": n, "engine": "x", "median_us": r, "p99_us": r,
                         "ops_per_s": 1e6 / r, "ratio": r} for n, r in ratios.items()]}


CURRENT = _result(**{bench.REFERENCE: 1.0, "decide/static_iam": 1000.0})


@pytest.fixture
def fake_measure(monkeypatch):
    """bench_main without the minutes of measuring: the 'current run' is CURRENT."""
    monkeypatch.setattr(bench, "_bench", lambda controls, policy, n: (json.loads(
        json.dumps(CURRENT)), []))
    monkeypatch.setattr(bench, "run_cases", lambda cases, n: json.loads(
        json.dumps(CURRENT["results"])))  # the gate's re-measurements


def _write(tmp_path: Path, data: object, name: str = "base.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_disjoint_baseline_is_an_input_error_listing_both_sides(tmp_path, fake_measure):
    base = _write(tmp_path, _result(**{bench.REFERENCE: 1.0, "decide/other": 1.0}))
    with pytest.raises(bench.BenchInputError) as e:
        bench.bench_main(compare_to=base, out=io.StringIO())
    assert "only in this run: decide/static_iam" in str(e.value)
    assert "only in the baseline: decide/other" in str(e.value)


@pytest.mark.parametrize("limit", ["nan%", "nan", "inf%", "-5%", "25", "1.5", "fast", ""])
def test_bad_limits_are_refused(limit):
    with pytest.raises(bench.BenchInputError):
        bench.parse_regression(limit)


@pytest.mark.parametrize("text, value", [("25%", 0.25), ("0.25", 0.25), ("1", 1.0),
                                         ("300%", 3.0), ("0", 0.0)])
def test_good_limits(text, value):
    assert bench.parse_regression(text) == pytest.approx(value)


def test_nan_ratio_is_a_regression_not_a_pass():
    base = _result(a=1.0)
    assert bench.compare(_result(a=float("nan")), base, 0.25)


@pytest.mark.parametrize("content", [
    '{"foo": 1}', "[1, 2]", "not json", "", '{"results": []}',
    '{"results": [{"name": "decide/static_iam", "ratio": "x", "median_us": 1}]}',
    '{"results": [{"name": "decide/static_iam", "ratio": NaN, "median_us": 1}]}',
])
def test_cli_bad_baseline_exits_2_with_one_line(tmp_path, fake_measure, content):
    base = _write(tmp_path, content)
    r = CliRunner().invoke(app, ["bench", "--compare", str(base)])
    assert r.exit_code == 2, r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert str(base) in r.output


@pytest.mark.parametrize("args", [["--compare", "DIR"], ["--max-regression", "nan%"],
                                  ["--max-regression", "25"], ["--compare", "MISSING"]])
def test_cli_bad_input_exits_2(tmp_path, fake_measure, args):
    base = _write(tmp_path, CURRENT)
    args = [str(tmp_path) if a == "DIR" else str(tmp_path / "nope.json") if a == "MISSING"
            else a for a in args]
    if "--compare" not in args:
        args += ["--compare", str(base)]
    r = CliRunner().invoke(app, ["bench", *args])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output


def test_cli_disjoint_baseline_exits_2(tmp_path, fake_measure):
    base = _write(tmp_path, {"foo": 1, "results": [{"name": "foo", "ratio": 1, "median_us": 1}]})
    r = CliRunner().invoke(app, ["bench", "--compare", str(base)])
    assert r.exit_code == 2 and "shares no benchmark" in r.output


def test_cli_thousandfold_regression_fails(tmp_path, fake_measure):
    base = _write(tmp_path, _result(**{bench.REFERENCE: 1.0, "decide/static_iam": 1.0}))
    r = CliRunner().invoke(app, ["bench", "--compare", str(base), "--max-regression", "25%"])
    assert r.exit_code == 1 and "REGRESSION decide/static_iam" in r.output


def _ci_gate():
    spec = importlib.util.spec_from_file_location("bench_gate", ROOT / ".ci" / "bench_gate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("content", ["[]", "garbage", '{"foo": 1}'])
def test_ci_gate_bad_baseline_exits_2(tmp_path, fake_measure, content, capsys):
    base = _write(tmp_path, content)
    assert _ci_gate().main(["--baseline", str(base)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_ci_gate_bad_limit_and_folder_exit_2(tmp_path, fake_measure):
    gate = _ci_gate()
    base = _write(tmp_path, CURRENT)
    assert gate.main(["--baseline", str(base), "--max-regression", "nan%"]) == 2
    assert gate.main(["--baseline", str(tmp_path)]) == 2


def test_markdown_summary_for_a_pull_request(tmp_path, fake_measure):
    base = _write(tmp_path, _result(**{bench.REFERENCE: 1.0, "decide/static_iam": 800.0}))
    md = tmp_path / "gate.md"
    r = CliRunner().invoke(app, ["bench", "--compare", str(base), "--markdown", str(md)])
    assert r.exit_code == 0, r.output
    text = md.read_text()
    assert "no regression beyond +25%" in text
    assert "| decide/static_iam | 1000.000 | 1000.00 | 800.00 | +25% |" in text
    slow = _write(tmp_path, _result(**{bench.REFERENCE: 1.0, "decide/static_iam": 500.0}), "b2")
    r = CliRunner().invoke(app, ["bench", "--compare", str(slow), "--markdown", str(md)])
    assert r.exit_code == 1
    assert "**regression**" in md.read_text() and "+100% :x: |" in md.read_text()
