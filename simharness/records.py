"""The records a run logs: one action-log tuple per requested action, one task-log record per
task, and the reason texts metrics count. Plain names only, so the engine, the running tally and
every exporter read the same layout without importing each other."""

from __future__ import annotations

# One action-log record per requested action (a tuple: cheap to append, easy to export).
ACTION_FIELDS = (
    "time", "agent", "identity", "archetype", "platform", "task", "depth", "tool",
    "action", "resource", "destination", "in_scope", "misuse_id", "kind", "goal",
    "source",  # plan | deviation | retry | replan | misuse
    "requester",  # agent | external (the request's own source, what a proxy sees)
    "allowed", "reasons", "latency", "duration", "credential", "risk", "visible", "attributed",
    "without_decision", "weight", "chain_origin", "token_mode",
    "review",  # "" | approved | rejected | timeout (an escalated request's human verdict)
)
A = {name: i for i, name in enumerate(ACTION_FIELDS)}

TASK_FIELDS = ("task", "agent", "type", "depth", "arrival", "start", "end", "status", "misuse_id",
               "identity")
T = {name: i for i, name in enumerate(TASK_FIELDS)}

# Actions per hand-over from the engine to the running tally and the audit writer (one parquet
# row group): large enough to amortise the hand-over, small enough to be no memory to speak of.
CHUNK_ROWS = 16_384

COMPLETED, FAILED, IN_FLIGHT = "completed", "failed", "in_flight"

# Reasons that say a request was denied because its identity or credential was taken away.
REVOCATION_REASONS = frozenset({"identity-quarantined", "credential-revoked", "token-revoked"})
TIMEOUT_MARK = "-timeout-fail-"  # in the reason of a request a station did not answer in time
REJECT_MARK = "-queue-full-fail-"  # ... of one a full station queue turned away
