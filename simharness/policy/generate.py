"""A task's generated policy (controls.task_policy.TaskPolicy) written as rules, Cedar or Rego.

What task_policy decides natively, in the three languages the PDP engines read, so that the
generated policy can be reviewed, stored or run in a real engine: one permit per permission of
the task's scope (attested workload, active task, within the role), forbids for destinations
outside the allow-list, for text arguments outside the declared values and for numbers above
the declared limit. Cedar and Rego compare whole numbers (engines.FIELDS rounds a float
argument), so a limit is written rounded up there: they agree with the native decision except
for a value within 1 of the limit, above it.
"""

from __future__ import annotations

import json
import math
from typing import Any

from simharness.controls.task_policy import TaskPolicy


def _literal(v: Any) -> str:
    return json.dumps(v)


def _on(p: TaskPolicy) -> list[str]:
    """The actions whose arguments are constrained (all four when the policy says all)."""
    return sorted(p.actions) if p.actions is not None else []


def _rules(p: TaskPolicy) -> str:
    rules: list[dict[str, Any]] = []
    for i, (tool, action, resource) in enumerate(sorted(p.scope)):
        rules.append({"id": f"permit-{i}", "effect": "allow",
                      "when": {"attested": True, "entitled": True, "task.active": True,
                               "task.id": p.task_id, "tool": tool, "action": action,
                               "resource": resource}})
    rules.append({"id": "forbid-destination", "effect": "deny",
                  "when": {"resource.external": True,
                           "resource": {"not_in": sorted(p.destinations)}}})
    on = {"action": {"in": _on(p)}} if p.actions is not None else {}
    for name, values in sorted(p.values.items()):
        if name not in p.limits:
            rules.append({"id": f"forbid-{name}", "effect": "deny",
                          "when": {**on, f"args.{name}": {"not_in": sorted(values, key=str)}}})
    for name, limit in sorted(p.limits.items()):
        rules.append({"id": f"forbid-{name}", "effect": "deny",
                      "when": {**on, f"args.{name}": {"gt": limit}}})
    import yaml

    return yaml.safe_dump({"policy_version": 1, "rules": rules}, sort_keys=False)


def _cedar(p: TaskPolicy) -> str:
    out = []
    for i, (tool, action, resource) in enumerate(sorted(p.scope)):
        out.append(f'@id("permit-{i}")\npermit (principal, action, resource)\nwhen {{\n'
                   f"  context.attested && context.entitled && context.task_active &&\n"
                   f"  context.task_id == {p.task_id} && context.tool == {_literal(tool)} &&\n"
                   f"  context.action == {_literal(action)} && "
                   f"context.resource == {_literal(resource)}\n}};")
    dests = ", ".join(_literal(d) for d in sorted(p.destinations))
    out.append('@id("forbid-destination")\nforbid (principal, action, resource)\n'
               f"when {{ context.resource_external && !([{dests}].contains(context.resource)) }};")
    on = ("[" + ", ".join(_literal(a) for a in _on(p)) + "].contains(context.action) && "
          if p.actions is not None else "")
    for name, values in sorted(p.values.items()):
        if name in p.limits:
            continue
        vals = ", ".join(_literal(v) for v in sorted(values, key=str))
        out.append(f'@id("forbid-{name}")\nforbid (principal, action, resource)\n'
                   f"when {{ {on}context.args has {name} && "
                   f"!([{vals}].contains(context.args.{name})) }};")
    for name, limit in sorted(p.limits.items()):
        out.append(f'@id("forbid-{name}")\nforbid (principal, action, resource)\n'
                   f"when {{ {on}context.args has {name} && "
                   f"context.args.{name} > {math.ceil(limit)} }};")
    return "\n\n".join(out) + "\n"


def _rego(p: TaskPolicy) -> str:
    out = ["package simharness.task", "", "import rego.v1", ""]
    for i, (tool, action, resource) in enumerate(sorted(p.scope)):
        out += [f'permit contains "permit-{i}" if {{', "\tinput.attested == true",
                "\tinput.entitled == true", "\tinput.task_active == true",
                f"\tinput.task_id == {p.task_id}", f"\tinput.tool == {_literal(tool)}",
                f"\tinput.action == {_literal(action)}",
                f"\tinput.resource == {_literal(resource)}", "}", ""]
    dests = ", ".join(_literal(d) for d in sorted(p.destinations))
    out += ['deny contains "forbid-destination" if {', "\tinput.resource_external == true",
            f"\tnot input.resource in {{{dests}}}" if dests else "\ttrue", "}", ""]
    on = (["\tinput.action in {" + ", ".join(_literal(a) for a in _on(p)) + "}"]
          if p.actions is not None else [])
    for name, values in sorted(p.values.items()):
        if name in p.limits:
            continue
        vals = ", ".join(_literal(v) for v in sorted(values, key=str))
        out += [f'deny contains "forbid-{name}" if {{', *on, f"\tv := input.args.{name}",
                f"\tnot v in {{{vals}}}" if vals else "\ttrue", "}", ""]
    for name, limit in sorted(p.limits.items()):
        # Two bodies (an OR): above the limit, or not a number at all (native denies a text
        # value where a number is declared; a comparison across types is not a denial).
        out += [f'deny contains "forbid-{name}" if {{', *on,
                f"\tinput.args.{name} > {math.ceil(limit)}", "}", "",
                f'deny contains "forbid-{name}" if {{', *on,
                f"\tv := input.args.{name}", "\tnot is_number(v)", "}", ""]
    out += ['default decision := {"allow": false, "reasons": ["default-deny"]}', "",
            'decision := {"allow": false, "reasons": sort(deny)} if count(deny) > 0', "",
            'decision := {"allow": true, "reasons": sort(permit)} if {',
            "\tcount(deny) == 0", "\tcount(permit) > 0", "}", ""]
    return "\n".join(out)


WRITERS = {"rules": _rules, "cedar": _cedar, "rego": _rego}


def render_task_policy(policy: TaskPolicy, engine: str) -> str:
    """The task's policy as a policy file for `engine` (rules | cedar | rego)."""
    if engine not in WRITERS:
        raise ValueError(f"unknown policy engine {engine!r}; known: {', '.join(WRITERS)}")
    return WRITERS[engine](policy)
