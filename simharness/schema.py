"""JSON Schemas of scenario files and control profiles, for editors and CI (`simharness schema`).

Generated from the pydantic models (descriptions, defaults, enums, bounds), with the forms the
loader accepts beyond them: durations and rates as strings (units.JsonForms), a control named
by its profile, a profile without a name (its file name)."""

from __future__ import annotations

from typing import Any

from simharness.misuse_catalogue import MISUSE_KINDS
from simharness.spec import ControlEntry, ScenarioSpec

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def scenario_schema() -> dict[str, Any]:
    """The schema of a scenario file."""
    schema = ScenarioSpec.model_json_schema()
    schema["$schema"] = DIALECT
    schema["title"] = "simharness scenario"
    props = schema["properties"]
    # `controls: [none, jit_per_task]` names shipped or local profiles.
    props["controls"]["items"] = {"anyOf": [
        {"type": "string", "description": "a control profile by name (controls/<name>.yaml)"},
        props["controls"]["items"]]}
    kinds = schema["$defs"]["Misuse"]["properties"]["kinds"]
    kinds["propertyNames"] = {"enum": list(MISUSE_KINDS)}
    return schema


def profile_schema() -> dict[str, Any]:
    """The schema of a control profile file (controls/<name>.yaml)."""
    schema = ControlEntry.model_json_schema()
    schema["$schema"] = DIALECT
    schema["title"] = "simharness control profile"
    schema["required"] = [r for r in schema.get("required", []) if r != "name"]
    schema["properties"]["name"]["description"] = "defaults to the file name; must equal it"
    return schema
