"""budget.py: SLO parsing and bisection over simulations on a tiny scenario."""

from __future__ import annotations

import math

import pytest
import yaml

from simharness.budget import SLO, format_budget, parse_slo, solve_budget

TINY = {
    "schema_version": 1,
    "name": "tiny_budget",
    "horizon": "10m",
    "replications": 2,
    "seed": 3,
    "resources": [{"name": "crm", "sensitivity": "confidential", "destination": "crm.example"}],
    "tools": [{"name": "crm_api", "actions": ["read", "write"], "resources": ["crm"]}],
    "agents": [{"name": "worker", "count": 10, "role": {"crm_api": ["read", "write"]},
                "task_rate": "600/h", "tasks": {"job": 1}}],
    "tasks": {"job": {"steps": [{"tool": "crm_api", "action": "read", "resource": "crm"},
                                {"tool": "crm_api", "action": "write", "resource": "crm"},
                                {"tool": "crm_api", "action": "read", "resource": "crm"}]}},
    # Constant think and step times: task inflation is then (rtt + service) / (think + step)
    # whenever nothing queues.
    "timing": {"think": "500ms", "step": "500ms"},
    "misuse": {"rate": 0},
    "controls": [{"name": "pdp", "model": "per_action_policy",
                  "params": {"pdp": {"servers": 2, "rtt": "1ms", "service_time": "100ms",
                                     "timeout": "10s"},
                             "detector": None, "revoke_on_deviation": False}}],
}


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny_budget.yaml"
    path.write_text(yaml.safe_dump(TINY, sort_keys=False))
    return str(path)


@pytest.mark.parametrize("text, slo", [
    ("task_inflation<=0.05", SLO("task_inflation", "<=", 0.05)),
    (" decision_p95_ms <= 50 ", SLO("decision_p95_ms", "<=", 50.0)),
    ("task_success_rate>=99%", SLO("task_success_rate", ">=", 0.99)),
    ("false_deny_rate<0.01", SLO("false_deny_rate", "<", 0.01)),
    ("misuse_caught_rate>0.5", SLO("misuse_caught_rate", ">", 0.5)),
])
def test_parse_slo(text, slo):
    assert parse_slo(text) == slo


@pytest.mark.parametrize("text, message", [
    ("task_inflaton<=0.05", "did you mean 'task_inflation'"),
    ("task_inflation=0.05", "expected 'metric<=value'"),
    ("task_inflation<=fast", "not a number"),
    ("", "expected 'metric<=value'"),
])
def test_parse_slo_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_slo(text)


def test_slo_met_and_nan():
    slo = parse_slo("decision_p95_ms<=50")
    assert slo.met(50.0) and not slo.met(50.1) and not slo.met(math.nan)


def test_largest_service_time(tiny):
    """No queue (servers .inf): inflation = (0.001 + s) / 1 s, so s <= 0.2 - 0.001."""
    res = solve_budget(tiny, "pdp", "pdp.service_time", "task_inflation<=0.2", lo="10ms",
                       hi="1s", overrides=["controls.pdp.pdp.servers=.inf"], tol=0.05)
    assert res.status == "ok", format_budget(res)
    assert res.direction == "largest" and res.kind == "duration"
    assert res.answer == pytest.approx(0.199, rel=0.06)
    lo, hi = res.interval
    assert lo == res.answer < hi
    assert res.confirmed is True
    confirm = sorted((p for p in res.points if p.role == "confirm"), key=lambda p: p.value)
    assert [p.meets for p in confirm] == [True, False]  # below meets, above fails
    assert confirm[0].value < res.answer < confirm[1].value
    assert res.runs == len(res.points) and res.simulations == 4 * res.runs
    text = format_budget(res)
    assert "answer: pdp.service_time = " in text and "95% CI" in text


def test_fewest_servers(tiny):
    """Counts: the meeting end is the high one, so the answer is the smallest that meets."""
    res = solve_budget(tiny, "pdp", "pdp.servers", "decision_p95_ms<=110", replications=2)
    assert res.kind == "integer" and res.direction == "smallest", format_budget(res)
    assert res.status == "ok" and res.confirmed is True, format_budget(res)
    by_value = {p.value: p for p in res.points}
    assert by_value[res.answer].meets
    assert not by_value[res.answer - 1].meets  # one fewer server fails
    assert by_value[res.answer + 1].meets  # one more meets
    assert res.interval == (res.answer - 1, res.answer)


def test_all_meet_and_bad_range(tiny):
    res = solve_budget(tiny, "pdp", "pdp.servers", "decision_p95_ms<=100000", lo=1, hi=3)
    assert res.answer is None and res.status == "all meet"
    assert "every value tried" in format_budget(res)
    with pytest.raises(ValueError, match="lo < hi"):
        solve_budget(tiny, "pdp", "pdp.servers", "decision_p95_ms<=50", lo=4, hi=2)


def test_additional_constraint_catches_fail_closed_timeouts(tiny):
    """With a 150 ms timeout failing closed, slower service fails tasks rather than inflating
    them; the task-success constraint bounds the answer by the timeout (rtt + s <= 150 ms)."""
    sets = ["controls.pdp.pdp.servers=.inf", "controls.pdp.pdp.timeout=150ms"]
    res = solve_budget(tiny, "pdp", "pdp.service_time", "task_inflation<=0.5", lo="10ms",
                       hi="1s", overrides=sets, also=["task_success_rate>=0.99"], tol=0.05)
    assert res.status == "ok" and res.confirmed, format_budget(res)
    assert res.answer == pytest.approx(0.149, rel=0.06)
    assert dict(res.at_answer.also)["task_success_rate"] >= 0.99
    assert "task_success_rate>=0.99" in format_budget(res)


def test_budget_command_prints_each_probe_and_its_verdict(tiny):
    from typer.testing import CliRunner

    from simharness.cli import app

    r = CliRunner().invoke(app, ["budget", tiny, "--control", "pdp", "--param", "pdp.servers",
                                 "--slo", "decision_p95_ms<=110", "--replications", "2"])
    assert r.exit_code == 0, r.output
    probes = [line for line in r.output.splitlines() if line.startswith("probe ")]
    assert len(probes) >= 4 and probes[0].startswith("probe 1: pdp.servers=")
    assert all(("meets the SLO" in p) != ("misses the SLO" in p) for p in probes)
    assert {"meets the SLO", "misses the SLO"} <= {p.split(": ")[-1].split(" (")[0] for p in probes}


def test_run_sizes_the_budget_a_scenario_asks_for(tmp_path):
    from typer.testing import CliRunner

    from simharness.cli import app

    data = {**TINY, "answer": "budget",
            "budget": {"control": "pdp", "param": "pdp.servers", "slo": ["decision_p95_ms<=110"]}}
    path = tmp_path / "tiny_budget.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    r = CliRunner().invoke(app, ["run", str(path), "--replications", "2"])
    assert r.exit_code == 0, r.output
    assert "answers its question with its budget" in r.output
    assert "probe 1: pdp.servers=" in r.output and "answer: pdp.servers = " in r.output
