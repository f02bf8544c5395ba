"""The JSON Schemas accept every shipped file (with a standard validator, jsonschema) and
reject what the loader rejects."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from simharness.schema import profile_schema, scenario_schema

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
PROFILES = sorted((ROOT / "controls").glob("*.yaml"))


def _validator(schema):
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@pytest.fixture(scope="module")
def scenario():
    return _validator(scenario_schema())


def test_every_shipped_scenario_and_profile_is_valid(scenario):
    profile = _validator(profile_schema())
    assert len(SCENARIOS) >= 10 and len(PROFILES) >= 8
    for path in SCENARIOS:
        errors = [e.message for e in scenario.iter_errors(yaml.safe_load(path.read_text()))]
        assert not errors, (path.name, errors[:3])
    for path in PROFILES:
        errors = [e.message for e in profile.iter_errors(yaml.safe_load(path.read_text()))]
        assert not errors, (path.name, errors[:3])


@pytest.mark.parametrize("change, where", [
    ({"horizon": "8x"}, "horizon"), ({"horizon": -1}, "horizon"),
    ({"agents": [{"name": "a", "role": {}, "task_rate": "6/q"}]}, "task_rate"),
    ({"typo": 1}, "typo"), ({"misuse": {"kinds": {"no_such_kind": 1}}}, "no_such_kind"),
    ({"replications": 0}, "replications")])
def test_the_schema_rejects_what_the_loader_rejects(scenario, change, where):
    data = yaml.safe_load((ROOT / "scenarios" / "baseline.yaml").read_text())
    data.update(change)
    errors = list(scenario.iter_errors(data))
    assert errors and any(where in (str(e.path) + e.message + str(e.instance)) for e in errors)


def test_fields_carry_descriptions_and_forms(scenario):
    schema = scenario_schema()
    props = schema["properties"]
    text = next(f for f in props["horizon"]["anyOf"] if f.get("type") == "string")
    assert "'8h'" in text["description"] and "(us ms s m h d)" in text["description"]
    agent = schema["$defs"]["Agent"]["properties"]
    rate = next(f for f in agent["task_rate"]["anyOf"] if f.get("type") == "string")
    assert "'6/h'" in rate["description"]
    assert agent["identity"]["enum"] == ["shared", "per_agent", "per_task"]
    described = [k for k, v in props.items() if v.get("description")]
    assert len(described) == len(props), sorted(set(props) - set(described))
