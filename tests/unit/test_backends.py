"""SimPy is the reference engine: the same processes on simpy.Environment give the same action
logs, task records and summary bytes as the fast kernel, on every shipped scenario."""

from __future__ import annotations

import pytest

import simharness
from simharness.controls.base import World, make
from simharness.engine import simulate
from simharness.loader import list_scenarios, load_scenario
from simharness.workload import build_workload

SHORT = ["horizon=20m", "warmup=0s", "replications=1"]


@pytest.mark.parametrize("name", [n for n, _ in list_scenarios()])
def test_kernel_and_simpy_give_identical_logs(name, tmp_path):
    spec = load_scenario(name, overrides=SHORT)
    world = World(spec)
    for entry in spec.controls:
        logs = [simulate(build_workload(spec, 0), make(entry.name, entry.model, entry.params,
                                                       world), backend=b)
                for b in ("kernel", "simpy")]
        assert repr(logs[0].actions) == repr(logs[1].actions), (name, entry.name)
        assert repr(logs[0].tasks) == repr(logs[1].tasks), (name, entry.name)
    if name == "baseline":  # and the files a run writes, through the scenario's `engine`
        out = {b: simharness.run(name, overrides=[*SHORT, f"engine={b}"], out=tmp_path / b)
               for b in ("kernel", "simpy")}
        for table in ("summary.csv", "misuse.csv", "timeline.csv", "latency.csv"):
            assert ((tmp_path / "kernel" / table).read_bytes()
                    == (tmp_path / "simpy" / table).read_bytes()), table
        assert out["kernel"].aggregate.equals(out["simpy"].aggregate)


def test_a_bad_delay_is_refused_on_both_backends():
    from simharness.engine import Kernel, SimPyKernel

    def sleeper(delay):
        yield delay

    for backend in (Kernel, SimPyKernel):
        for bad in (-1.0, float("nan"), float("inf")):
            k = backend()
            k.start(sleeper(bad))
            with pytest.raises(ValueError, match="a delay must be a finite number >= 0"):
                k.run(10.0)


def test_engine_option_on_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from simharness.cli import app

    r = CliRunner().invoke(app, ["run", "baseline", "--engine", "simpy", "--horizon", "20m",
                                 "--replications", "1", "--out", str(tmp_path / "o"), "-q"])
    assert r.exit_code == 0, r.output
    assert simharness.load_results(tmp_path / "o").manifest["resolved_scenario"]["engine"] == "simpy"
    r = CliRunner().invoke(app, ["run", "baseline", "--engine", "banana"])
    assert r.exit_code == 2 and "--engine: 'banana' is not an event loop" in r.output
