"""What the command line says: -h, --version, and errors named in the user's terms."""

from __future__ import annotations

import pytest


def test_short_help_and_version_on_every_command():
    from typer.testing import CliRunner

    from simharness import __version__
    from simharness.cli import app

    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"simharness {__version__}"
    for cmd in (["-h"], ["run", "-h"], ["sweep", "-h"], ["bound", "-h"], ["import", "-h"],
                ["import", "agentdojo", "-h"], ["budget", "-h"], ["diff-policy", "-h"]):
        r = CliRunner().invoke(app, cmd)
        assert r.exit_code == 0 and "Usage" in r.output, cmd


def _invoke(*args):
    from typer.testing import CliRunner

    from simharness.cli import app

    return CliRunner().invoke(app, list(args))


def test_control_parameter_errors_name_the_control_and_suggest():
    r = _invoke("run", "baseline", "--set", "controls.jit_per_task.tll=1h", "--horizon", "1h")
    assert r.exit_code == 2
    assert "--set: controls.jit_per_task.tll: unknown key 'tll' (did you mean 'ttl'?)" in r.output
    r = _invoke("run", "baseline", "--set", "controls.jit_per_task.ttl=banana")
    assert r.exit_code == 2 and "controls.jit_per_task.ttl: expected a duration" in r.output


def test_a_scenario_files_control_params_are_named_by_control(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "schema_version: 1\nname: p\nhorizon: 1h\n"
        "resources: [{name: crm, sensitivity: internal, destination: x}]\n"
        "tools: [{name: t, actions: [read], resources: [crm]}]\n"
        "agents: [{name: a, count: 1, role: {t: [read]}, task_rate: 2/h, tasks: {x: 1}}]\n"
        "tasks: {x: {steps: [{tool: t, action: read, resource: crm}]}}\n"
        "controls:\n- {name: j, model: jit_per_task, params: {tll: 1h}}\n")
    r = _invoke("validate", str(path))
    assert r.exit_code == 2
    assert f"{path}:9:43: controls.j.tll: unknown key 'tll' (did you mean 'ttl'?)" in r.output


@pytest.mark.parametrize("value, says", [
    ("8", "--horizon: give a unit, e.g. '8h'"), ("8x", "--horizon: expected a duration")])
def test_horizon_errors_name_the_option(value, says):
    for cmd in ("run", "sweep"):
        r = _invoke(cmd, "baseline", "--horizon", value)
        assert r.exit_code == 2 and says in r.output and "--set" not in r.output, (cmd, r.output)


def test_run_prints_warnings_on_stderr(tmp_path):
    path = tmp_path / "u.yaml"
    path.write_text(
        "schema_version: 1\nname: u\nhorizon: 10m\n"
        "resources: [{name: crm, sensitivity: internal, destination: x}]\n"
        "tools: [{name: t, actions: [read], resources: [crm]}]\n"
        "agents: [{name: a, count: 1, role: {t: [read]}, task_rate: 2, tasks: {x: 1}}]\n"
        "tasks: {x: {steps: [{tool: t, action: read, resource: crm}]}}\n"
        "controls: [none]\n")
    r = _invoke("run", str(path), "--out", str(tmp_path / "out"), "--replications", "1")
    assert r.exit_code == 0, r.output
    assert "warning: agents.0.task_rate: 2 has no unit" in r.output
    assert "warning: agents 'a': tasks arrive every 0.5 s" in r.output


def _tiny(tmp_path, extra: str) -> str:
    path = tmp_path / "t.yaml"
    path.write_text(
        "schema_version: 1\nname: t\nhorizon: 20m\nreplications: 2\n"
        "resources: [{name: crm, sensitivity: internal, destination: x}]\n"
        "tools: [{name: t, actions: [read], resources: [crm]}]\n"
        "agents: [{name: a, count: 2, role: {t: [read]}, task_rate: 60/h, tasks: {x: 1}}]\n"
        "tasks: {x: {steps: [{tool: t, action: read, resource: crm}]}}\n"
        "controls: [none, static_iam]\n" + extra)
    return str(path)


def test_run_does_what_answers_the_question(tmp_path):
    import simharness

    sweep = _tiny(tmp_path, "answer: sweep\nsweep: {agents.0.count: [1, 3]}\n")
    r = _invoke("run", sweep, "--out", str(tmp_path / "s"))
    assert r.exit_code == 0, r.output
    assert "answers its question with its sweep" in r.output
    assert sorted(simharness.load_results(tmp_path / "s").aggregate["agents.0.count"]) == [1, 1, 3, 3]
    # --controls: the user asks for a comparison of controls instead.
    r = _invoke("run", sweep, "--controls", "none,static_iam", "--out", str(tmp_path / "c"))
    assert r.exit_code == 0 and "answers its question" not in r.output
    assert "agents.0.count" not in simharness.load_results(tmp_path / "c").aggregate.columns

    r = _invoke("run", "agentdojo_travel")
    assert r.exit_code == 0 and "| jit_tool | 20/20 (100.0%) | 114/120 | 95.0% |" in r.output


@pytest.mark.parametrize("extra, says", [
    ("answer: sweep\n", "answer: answer sweep needs a `sweep:` grid"),
    ("answer: budget\n", "answer: answer budget needs a `budget:` block"),
    ("answer: bound\n", "answer: answer bound needs misuse.cases"),
    ("budget: {control: jit, param: ttl, slo: ['task_inflation<=0.1']}\n",
     "budget.control: unknown control 'jit'")])
def test_an_answer_needs_what_it_runs(tmp_path, extra, says):
    r = _invoke("validate", _tiny(tmp_path, extra))
    assert r.exit_code == 2 and says in r.output, r.output
