"""The rules compiler: compile the shipped policy; the result decides the known cases right."""

from __future__ import annotations

import pytest
import yaml

from simharness import bench
from simharness.controls.base import World
from simharness.controls.per_action_policy import DEFAULT_POLICY, resolve_policy_path
from simharness.loader import load_scenario
from simharness.policy.rules import compile_rules

pytestmark = pytest.mark.benchmark


def test_rules_compile(benchmark):
    path = resolve_policy_path(DEFAULT_POLICY)
    data = yaml.safe_load(path.read_text())

    policy = benchmark(compile_rules, data, str(path))

    world = World(load_scenario("baseline", controls=["none"]))
    cases = bench.known_cases("per_action_policy", world)
    assert cases
    for label, req, allow in cases:
        assert policy.evaluate(req).allow is allow, label


def test_rules_evaluate(benchmark, checked_controls):
    """Policy evaluation alone (no quarantine check) on the recorded per_action_policy requests."""
    control, requests, expected = checked_controls["per_action_policy"]
    evaluate = control.policy.evaluate

    got = benchmark(lambda: [evaluate(r) for r in requests])

    assert [d.allow for d in got] == [d.allow for d in expected]
