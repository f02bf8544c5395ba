"""Every shipped scenario loads, runs and opens with the question it answers."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import simharness
from simharness.cli import app
from simharness.loader import data_dir, list_scenarios

SHIPPED = sorted(p.stem for p in data_dir("scenarios").glob("*.yaml"))


def test_the_seven_scenarios_ship():
    assert {"baseline", "legacy_saas", "multi_agent_pipeline", "third_party_embedded",
            "public_low_risk", "prod_admin", "pdp_capacity"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_scenario_opens_with_its_question_and_runs(name, tmp_path):
    text = (data_dir("scenarios") / f"{name}.yaml").read_text()
    assert text.startswith("# Question"), "each scenario opens with the question it answers"
    res = simharness.run(name, out=tmp_path, overrides=["replications=1", "horizon=20m", "warmup=0"])
    assert len(res.summary) == len(simharness.load_scenario(name).controls)
    assert (res.summary.actions > 0).all()


def test_list_scenarios_shows_descriptions():
    out = CliRunner().invoke(app, ["list", "scenarios"])
    assert out.exit_code == 0
    for name, desc in list_scenarios():
        assert name in out.output and desc and desc in out.output


def test_list_misuse_shows_standards_ids():
    out = CliRunner().invoke(app, ["list", "misuse"])
    assert out.exit_code == 0 and "ASI01" in out.output and "AML.T0086" in out.output
