"""Sweeps: grids from the command line or the scenario's `sweep:` block, executors, progress."""

from __future__ import annotations

import io
import json

import pytest
from typer.testing import CliRunner

import simharness
from simharness import sweeps as sweeping
from simharness.cli import app
from tests.conftest import make_spec

TABLES = ("summary.csv", "aggregate.csv", "misuse.csv", "timeline.csv", "latency.csv")


def test_expand_grid_is_the_cartesian_product_in_the_order_given():
    assert sweeping.expand_grid(None) == [{}]
    assert sweeping.expand_grid({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]


def test_api_sweep_on_a_spec_gives_tidy_rows_with_one_column_per_parameter(tmp_path):
    spec = make_spec(horizon="30m", replications=1)
    res = simharness.sweep(spec, {"agents.0.count": [1, 2], "horizon": ["20m", "30m"]},
                           controls=["static_iam"], out=tmp_path)
    s = res.summary
    assert list(s.columns[:6]) == ["scenario", "control", "replication", "seed",
                                   "agents.0.count", "horizon"]
    assert s[["agents.0.count", "horizon"]].values.tolist() == [
        [1, "20m"], [1, "30m"], [2, "20m"], [2, "30m"]]
    assert set(s["control"]) == {"static_iam"}  # the hidden `none` reference is not reported
    assert len(res.aggregate) == 4 and {"agents.0.count", "horizon"} <= set(res.aggregate.columns)
    # the grid point really changes the simulation
    assert s.loc[0, "tasks"] < s.loc[3, "tasks"]


def test_sweep_block_and_grid_option_give_the_same_rows(tmp_path):
    spec = make_spec(horizon="20m", replications=1, sweep={"agents.0.count": [1, 3]})
    path = tmp_path / "mini.yaml"
    from simharness.loader import dump_scenario

    path.write_text(dump_scenario(spec))
    runner = CliRunner()
    block = runner.invoke(app, ["sweep", str(path), "--out", str(tmp_path / "block"), "-q",
                                "--workers", "1"])
    assert block.exit_code == 0, block.output
    grid = runner.invoke(app, ["sweep", str(path), "--grid", "agents.0.count=1,3",
                               "--out", str(tmp_path / "grid"), "-q", "--workers", "1"])
    assert grid.exit_code == 0, grid.output
    for name in TABLES:
        assert (tmp_path / "block" / name).read_bytes() == (tmp_path / "grid" / name).read_bytes()
    manifest = json.loads((tmp_path / "grid" / "manifest.json").read_text())
    assert manifest["grid"] == {"agents.0.count": [1, 3]}


def test_bad_grid_values_fail_before_anything_runs(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["sweep", "baseline", "--grid", "agents.0.count=2,x",
                                      "--out", str(out), "-q"])
    assert result.exit_code == 2
    assert "agents.0.count" in result.output and not out.exists()


def test_executor_options_are_checked():
    runner = CliRunner()
    assert runner.invoke(app, ["run", "baseline", "--executor", "threads"]).exit_code == 2
    assert runner.invoke(app, ["run", "baseline", "--scheduler", "tcp://x:1"]).exit_code == 2


def test_simharness_sweep_stays_the_api_function_after_the_module_is_imported():
    from simharness import api

    assert sweeping.__name__ == "simharness.sweeps"
    assert simharness.sweep is api.sweep


def test_same_bytes_with_one_worker_two_workers_and_a_dask_local_cluster(tmp_path):
    pytest.importorskip("distributed", reason="needs dask.distributed (pip install -e .[dask])")
    args = dict(grid={"agents.0.count": [2, 4]}, overrides=["replications=2", "horizon=20m"])
    spec = make_spec()
    simharness.sweep(spec, out=tmp_path / "w1", workers=1, **args)
    simharness.sweep(spec, out=tmp_path / "w2", workers=2, **args)
    simharness.sweep(spec, out=tmp_path / "dask", workers=2, executor="dask", **args)
    for name in TABLES:
        one = (tmp_path / "w1" / name).read_bytes()
        assert one == (tmp_path / "w2" / name).read_bytes(), name
        assert one == (tmp_path / "dask" / name).read_bytes(), name
    assert json.loads((tmp_path / "dask" / "manifest.json").read_text())["runs_computed"] == 8


def test_progress_off_a_terminal_prints_plain_lines_at_each_tenth(monkeypatch):
    clock = iter(float(i) for i in range(2, 10_000))
    monkeypatch.setattr(sweeping.time, "monotonic", lambda: next(clock))
    stream = io.StringIO()  # not a TTY
    progress = sweeping.Progress(100, quiet=False, stream=stream, interval=1e9)
    for _ in range(100):
        progress.step()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 10 and lines[-1].startswith("progress: 100% 100/100 runs")


def test_progress_off_a_terminal_also_prints_every_interval(monkeypatch):
    clock = iter(float(i) for i in range(2, 10_000))
    monkeypatch.setattr(sweeping.time, "monotonic", lambda: next(clock))
    stream = io.StringIO()
    progress = sweeping.Progress(1000, quiet=False, stream=stream, interval=30.0)
    for _ in range(90):
        progress.step()
    assert len(stream.getvalue().splitlines()) == 3  # 90 s of 1 s steps, nothing at 10 % yet


def test_quiet_progress_prints_nothing():
    stream = io.StringIO()
    progress = sweeping.Progress(3, quiet=True, stream=stream)
    for _ in range(3):
        progress.step()
    assert stream.getvalue() == ""


def test_missing_dask_names_the_extra(monkeypatch):
    import builtins

    from simharness import distributed
    from simharness.audit import MissingExtraError

    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "distributed" or name.startswith("distributed."):
            raise ImportError("No module named 'distributed'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(MissingExtraError, match=r"simharness\[dask\]"):
        list(distributed.dask_map(str, [1]))


def test_the_manifest_records_each_replications_workload_digest(tmp_path):
    """Recorded once per replication (with the first control's run), and it is the digest of
    that replication's workload built directly."""
    from simharness.workload import build_workload

    spec = make_spec(horizon="20m", replications=2)
    res = simharness.sweep(spec, controls=["static_iam", "none"], out=tmp_path)
    digests = res.manifest["workload_digests"]
    assert digests == {f"{{}}|{rep}": build_workload(spec, rep).digest() for rep in range(2)}
