"""The misuse catalogue as data: what each kind injects and its standards ids (docs/sources.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MisuseKind:
    name: str
    summary: str
    asi: tuple[str, ...]  # OWASP Top 10 for Agentic Applications 2026
    nhi: tuple[str, ...]  # OWASP Non-Human Identities Top 10 2025
    atlas: tuple[str, ...]  # MITRE ATLAS techniques
    needs_delegation: bool = False


_KINDS = (
    MisuseKind("out_of_scope_resource",
               "planned tool and action on a different resource of >= sensitivity",
               ("ASI02",), ("NHI5",), ("AML.T0053",)),
    MisuseKind("unneeded_capability",
               "a role permission whose (tool, action) pair the task does not use",
               ("ASI03",), ("NHI5",), ("AML.T0053",)),
    MisuseKind("exfiltration",
               "read of the most sensitive in-role resource, then send to an external, "
               "unapproved destination with large bytes_out",
               ("ASI02", "ASI01"), ("NHI5",), ("AML.T0086",)),
    MisuseKind("goal_hijack",
               "from a random step on, the next n actions are drawn from the role, off plan",
               ("ASI01",), (), ("AML.T0051",)),
    MisuseKind("destructive_action", "delete/admin on an in-scope resource",
               ("ASI02", "ASI10"), (), ("AML.T0101",)),
    MisuseKind("credential_theft",
               "the current credential leaks; an outside attacker (not attested, other source) "
               "uses it after a delay until it expires or is revoked",
               ("ASI03",), ("NHI2", "NHI7"), ("AML.T0055", "AML.T0098")),
    MisuseKind("token_replay", "the agent reuses its task credential after the task ended",
               ("ASI03",), ("NHI7", "NHI1"), ("AML.T0091.000",)),
    MisuseKind("token_passthrough",
               "a delegator forwards its own token; the delegate uses it at another audience",
               ("ASI03", "ASI07"), ("NHI4",), ("AML.T0091.000",), needs_delegation=True),
    MisuseKind("confused_deputy",
               "a delegate performs, under its own authority, an action the origin may not do",
               ("ASI03", "ASI07"), ("NHI5",), ("AML.T0053",), needs_delegation=True),
    MisuseKind("unscoped_delegation",
               "a delegate acts beyond its sub-task with an inherited token",
               ("ASI03",), ("NHI5", "NHI9"), (), needs_delegation=True),
    MisuseKind("impersonation", "an agent presents another archetype's identity",
               ("ASI07",), ("NHI4", "NHI9"), ("AML.T0073",)),
    MisuseKind("stale_authorization",
               "the role loses a permission mid-task; the agent keeps using it",
               ("ASI03",), ("NHI7",), ()),
    MisuseKind("resource_overload", "a burst of in-scope calls far above the agent's rate",
               ("ASI02", "ASI08"), (), ("AML.T0034.002",)),
    # In-plan misuse: the call is one the plan contains; only its arguments or data differ.
    MisuseKind("argument_tampering",
               "a planned step runs with an attacker's argument value (recipient, destination, "
               "amount)",
               ("ASI01", "ASI02"), (), ("AML.T0051", "AML.T0053")),
    MisuseKind("in_plan_exfiltration",
               "a planned send carries data read in the task to an external destination through "
               "an approved channel",
               ("ASI01", "ASI02"), (), ("AML.T0086", "AML.T0051")),
)

CATALOGUE: dict[str, MisuseKind] = {k.name: k for k in _KINDS}
MISUSE_KINDS: tuple[str, ...] = tuple(CATALOGUE)


def standards_ids(kind: str) -> str:
    """All standards ids of a kind, ';'-separated (for CSV and reports)."""
    k = CATALOGUE[kind]
    return ";".join((*k.asi, *k.nhi, *k.atlas))
