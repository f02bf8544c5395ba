"""Every metric by its contract name (DESIGN.md section 3): unit, kind, and how to pool it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MetricInfo:
    name: str
    unit: str
    description: str
    # Every metric's interval is Student t over per-replication values. "rate": the value of a
    # replication is its numerator / denominator columns of the summary.
    kind: str = "value"
    numerator: str | None = None
    denominator: str | None = None
    higher_is_better: bool | None = None
    headline: bool = False
    # The metric's domain: intervals are clipped to it (None: unbounded on that side).
    lower: float | None = 0.0
    upper: float | None = None

    def __post_init__(self) -> None:
        if self.kind == "rate" and self.upper is None:
            object.__setattr__(self, "upper", 1.0)


M = MetricInfo
METRICS: tuple[MetricInfo, ...] = (
    M("tasks", "tasks", "top-level tasks that arrived after warm-up", "count"),
    M("tasks_completed", "tasks", "tasks that finished every step", "count"),
    M("tasks_failed", "tasks", "tasks aborted by a denial", "count"),
    M("actions", "actions", "actions requested (legitimate and injected)", "count"),
    M("actions_denied", "actions", "actions denied", "count"),
    M("legit_actions", "actions", "legitimate (not injected) actions requested", "count"),
    M("legit_denied", "actions", "legitimate actions denied", "count"),
    M("collateral_denials", "actions",
      "legitimate actions denied because a revocation hit a shared or flagged identity", "count"),
    M("executed_actions", "actions", "actions that executed", "count"),
    M("misuse_injected", "instances",
      "misuse instances whose goal actions were requested under this control", "count"),
    M("misuse_prevented", "instances", "instances whose goal actions never executed", "count"),
    M("misuse_detected", "instances", "instances with an executed goal action that was flagged",
      "count"),
    M("misuse_missed", "instances", "instances neither prevented nor detected", "count"),
    M("misuse_unreached", "instances",
      "instances whose task ended (e.g. after a false denial) before any goal action was "
      "requested: not judged, so neither caught nor missed", "count"),
    M("misuse_caught", "instances", "prevented + detected", "count"),
    M("misuse_caught_rate", "share", "(prevented + detected) / injected", "rate",
      "misuse_caught", "misuse_injected", True, True),
    M("damage", "weighted permissions", "sum of w(p) over executed goal actions", "value",
      higher_is_better=False, headline=True),
    M("exposure", "weighted permission-seconds",
      "integral over agents of authority minus the weight in use; authority: the summed weight "
      "of the permissions the control's own decide() allows the agent in its current contexts "
      "(probed at every change point)", "value", higher_is_better=False, headline=True),
    M("credential_exposure", "weighted permission-seconds",
      "integral of live credentials' W(G) minus the weight of steps executing under them "
      "(what was issued, not what the control allows)", "value", higher_is_better=False),
    M("standing_exposure", "weighted permission-seconds",
      "the part of exposure accrued while the agent had no task", "value", higher_is_better=False),
    M("exposure_per_agent_hour", "weighted permissions",
      "exposure / (agents x measured hours)", "value", higher_is_better=False),
    M("blast_radius", "weighted permission-seconds",
      "expected authority of a thief holding an agent's identity and credential, times the time "
      "until that credential ends, for a theft at a random moment", "value",
      higher_is_better=False),
    M("false_deny_rate", "share", "denied legitimate actions / legitimate actions", "rate",
      "legit_denied", "legit_actions", False, True),
    M("task_success_rate", "share", "completed / (completed + failed) tasks", "rate",
      "tasks_completed", "tasks_ended", True, True),
    M("tasks_ended", "tasks", "completed + failed tasks", "count"),
    M("decision_mean_ms", "ms", "mean decision latency (queueing included)", "value",
      higher_is_better=False),
    M("decision_p50_ms", "ms", "median decision latency", "value", higher_is_better=False),
    M("decision_p95_ms", "ms", "95th percentile decision latency", "value", higher_is_better=False),
    M("decision_p99_ms", "ms", "99th percentile decision latency", "value",
      higher_is_better=False, headline=True),
    M("decision_max_ms", "ms", "largest decision latency", "value", higher_is_better=False),
    M("task_time_mean_s", "s", "mean task time, start to end", "value", higher_is_better=False),
    M("task_wait_mean_s", "s",
      "mean time a task waited for its agent before starting (the agent busy with earlier "
      "tasks, up to its concurrency)", "value", higher_is_better=False),
    M("task_wait_p95_s", "s", "95th percentile of that wait", "value", higher_is_better=False),
    M("task_inflation", "share",
      "slow-down of legitimate work: on the tasks that completed both under this control and "
      "under `none` on the same workload (no injected misuse, arrived after the warm-up), "
      "their summed time / their summed time under `none` - 1. Failed tasks are in neither "
      "sum, so a control that fails tasks early cannot look fast; read it beside "
      "task_success_rate. 0 when neither took any time, inf when only this control did",
      "value", higher_is_better=False, headline=True, lower=None),
    M("task_time_added_s", "s",
      "mean time added per task on the same paired tasks (this control - `none`)", "value",
      higher_is_better=False, lower=None),
    M("pdp_utilization", "share", "busy fraction of the policy decision point servers", "value",
      upper=1.0),
    M("tokens_issued", "tokens", "credentials issued by the token service", "count"),
    M("policy_evaluations", "evaluations",
      "requests issued after the warm-up that a PDP answered in time and evaluated (cache "
      "hits, timeouts and rejections excluded): at most the actions counted, times the PDPs "
      "on the path (a layered stack with two PDPs evaluates twice)",
      "count"),
    M("decision_timeouts", "requests",
      "requests a queueing station (PDP, token service) did not answer before its timeout: "
      "allowed without a decision when it fails open, denied (and so in actions_denied) when "
      "it fails closed", "count"),
    M("decision_timeout_rate", "share", "decision_timeouts / actions", "rate",
      "decision_timeouts", "actions", False),
    M("decision_rejections", "requests",
      "requests a station turned away at once because its queue was full (max_queue); its "
      "fail mode decides them as for a timeout", "count"),
    M("allowed_without_decision", "actions", "actions allowed by fail-open after a PDP timeout",
      "count"),
    M("audit_attributed", "actions", "executed actions whose record names agent and task", "count"),
    M("audit_attribution_rate", "share",
      "executed actions whose tool-invocation record names the agent and the task", "rate",
      "audit_attributed", "executed_actions", True),
    M("invisible_actions", "actions", "executed actions the control could not see", "count"),
    M("invisible_action_rate", "share", "executed actions the control could not see", "rate",
      "invisible_actions", "executed_actions", False),
    # Human review (models that escalate; NaN for the others).
    M("approvals_requested", "requests", "requests escalated to a human reviewer", "count"),
    M("approvals_requested_per_hour", "requests/h", "escalated requests per measured hour",
      "value", higher_is_better=False),
    M("approval_wait_p50_s", "s", "median time from escalation to verdict (or to the timeout)",
      "value", higher_is_better=False),
    M("approval_wait_p95_s", "s", "95th percentile time from escalation to verdict",
      "value", higher_is_better=False),
    M("review_timeouts", "requests", "escalated requests nobody judged before the timeout",
      "count"),
    M("misuse_escalated", "actions", "injected actions put in front of a reviewer", "count"),
    M("misuse_judged", "actions", "escalated injected actions a reviewer gave a verdict on "
      "(before the timeout)", "count"),
    M("misuse_approved_actions", "actions", "injected actions a reviewer approved", "count"),
    M("misuse_approved", "share",
      "injected actions a reviewer approved / those a reviewer judged (rubber-stamping; "
      "timeouts are counted in review_timeouts)", "rate", "misuse_approved_actions",
      "misuse_judged", False),
    M("reviewer_utilization", "share", "busy reviewer time / staffed reviewer time", "value",
      upper=1.0),
)

METRIC_INFO: dict[str, MetricInfo] = {m.name: m for m in METRICS}
METRIC_NAMES: tuple[str, ...] = tuple(METRIC_INFO)
def _headline() -> tuple[str, ...]:
    # Catalogue order, but task_success_rate right before task_inflation: inflation is
    # measured on completed tasks, so the two are read together.
    names = [m.name for m in METRICS if m.headline and m.name != "task_success_rate"]
    names.insert(names.index("task_inflation"), "task_success_rate")
    return tuple(names)


HEADLINE: tuple[str, ...] = _headline()
