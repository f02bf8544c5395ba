"""Warnings: each present when its condition holds and absent when it does not (expected
values worked out by hand)."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest

from simharness import advice
from simharness.spec import ScenarioSpec
from tests.conftest import MINI


def test_bare_rates_and_durations_are_named_with_what_they_mean():
    raw = {"horizon": 8, "agents": [{"task_rate": 2}, {"task_rate": "2/h"}]}
    lines = advice.unitless(raw)
    assert lines == [
        "agents.0.task_rate: 2 has no unit and is read as 2/s (7200/h); write '2/h' if you "
        "meant per hour",
        "horizon: 8 has no unit and is read as 8 seconds; write '8h' or '8s' to say which"]
    assert advice.unitless({"horizon": "8h", "agents": [{"task_rate": "6/h"}]}) == []


def _spec(rate: str) -> ScenarioSpec:
    data = copy.deepcopy(MINI)
    data["timing"] = {"think": "1s", "step": "1s"}
    data["tasks"] = {"three": {"steps": [{"tool": "docs", "action": "read", "resource": "wiki"}] * 3}}
    data["agents"] = [{"name": "a", "count": 1, "role": {"docs": ["read"]}, "task_rate": rate,
                       "tasks": {"three": 1}}]
    data["misuse"] = {"rate": 0.0}
    return ScenarioSpec.model_validate(data)


@pytest.mark.parametrize("rate, load", [("0.5/s", 3.0), ("0.1/s", 0.6)])
def test_backlog_when_tasks_arrive_faster_than_an_agent_finishes_them(rate, load):
    # 3 steps x (1 s think + 1 s step) = 6 s a task; load = rate x 6 s.
    lines = advice.backlog(_spec(rate))
    if load > 1:
        assert len(lines) == 1 and f"load {load:g} > 1" in lines[0] and "'a'" in lines[0]
    else:
        assert lines == []


def _agg(values):
    return pd.DataFrame({"control": list(values), "misuse_caught_rate_mean": list(values.values()),
                         "damage_mean": [1.0] * len(values)})


def test_misuse_kind_never_injected_and_undefined_metrics():
    spec = ScenarioSpec.model_validate({**copy.deepcopy(MINI), "misuse": {
        "rate": 0.2, "kinds": {"out_of_scope_resource": 1, "token_replay": 1}}})
    misuse = pd.DataFrame({"kind": ["out_of_scope_resource", "token_replay"], "injected": [4, 0]})
    lines = advice.after_run(spec, _agg({"none": 0.0, "jit": math.nan}), misuse)
    assert any("'token_replay' was asked for" in x for x in lines)
    assert not any("out_of_scope_resource" in x for x in lines)
    assert "misuse_caught_rate is undefined for jit (no misuse was injected)" in lines
    misuse.loc[1, "injected"] = 1
    assert advice.after_run(spec, _agg({"none": 0.0, "jit": 0.5}), misuse) == []


def test_no_misuse_by_design_is_not_warned_about():
    spec = ScenarioSpec.model_validate({**copy.deepcopy(MINI), "misuse": {"rate": 0.0}})
    assert advice.after_run(spec, _agg({"none": math.nan}), pd.DataFrame()) == []
