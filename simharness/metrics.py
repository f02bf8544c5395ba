"""Metrics of one run (DESIGN.md section 3): exposure integrals, misuse outcomes, latency, audit.

Everything is measured after the warm-up and up to the horizon. `exposure` and `blast_radius`
come from the authority the probe measured by asking the control (authority.py);
`credential_exposure` from the ledger's credential intervals and the executed actions; the
rest from the run's running totals (tally.py), which the engine keeps as it logs.
"""

from __future__ import annotations

import math
from array import array
from typing import Any

import numpy as np

from simharness.authority import Cumulative
from simharness.engine import RunLog
from simharness.misuse_catalogue import MISUSE_KINDS
from simharness.tally import Tally

LATENCY_QUANTILES = np.linspace(0.0, 1.0, 201)


def measured(log: RunLog) -> Tally:
    """The run's running totals (a log built by hand, without them, is tallied here)."""
    tally = getattr(log, "tally", None)
    return tally if tally is not None else Tally.of(log)


def credential_exposure(log: RunLog) -> float:
    """Integral of live credentials' W(G) minus the weight of steps executing under them: +W(G)
    over each credential's live span, -w(p) over each step executing under it (the tally's
    terms), all clipped to [warm-up, horizon]."""
    lo, hi = log.warmup, log.horizon
    terms = array("d", measured(log).credential_use)
    for c in log.ledger.credentials:
        a, b = max(c.issued, lo), min(c.end, hi)
        if c.weight > 0 and b > a:
            terms.append(c.weight * (b - a))
    # fsum, not a dot product: a BLAS dot product's rounding depends on the CPU's kernel and
    # the BLAS build, so the same run gave different last digits on two machines; fsum is
    # exactly rounded whatever the order of the terms.
    return max(math.fsum(terms), 0.0)


def exposure_curve(log: RunLog) -> tuple[np.ndarray, np.ndarray, float]:
    """(grid times, cumulative exposure at each, total exposure): authority minus weight in use,
    on the probe's fixed grid over [warm-up, horizon] (authority.TIMELINE_POINTS points); NaN
    for a run simulated without probing."""
    a = log.authority
    if a is None:
        grid, _ = Cumulative(log.warmup, log.horizon).curve()
        return grid, np.full(len(grid), math.nan), math.nan
    grid, curve = a.exposure.curve()
    return grid, curve, max(a.exposure.total, 0.0)


def blast_radius(log: RunLog) -> float:
    """E[thief authority x remaining life] for a theft at a uniformly random moment when a thief
    would get anything: the authority decide() grants to someone outside presenting the agent's
    identity and credential, times the time until that credential ends (the horizon for an
    identity without one). Probed like authority (authority.py)."""
    a = log.authority
    if a is None:  # simulated without probing
        return math.nan
    return a.blast_num / a.blast_den if a.blast_den > 0 else 0.0


def misuse_outcomes(log: RunLog) -> list[dict]:
    """Per kind: injected (instances whose goal actions were requested), prevented, detected,
    missed, unreached (the task ended before any goal action), damage; instances of measured
    tasks only (those with an outcome, see Tally.task_ended)."""
    t = measured(log)
    rows: dict[str, dict[str, Any]] = {
        k: {"kind": k, "injected": 0, "prevented": 0, "detected": 0, "missed": 0, "unreached": 0,
            "damage": 0.0}
        for k in sorted(set(t.counted.values()), key=MISUSE_KINDS.index)}
    for mid, kind in sorted(t.counted.items()):
        r = rows[kind]
        if mid not in t.requested:
            # Its task ended (a denial of legitimate work, most often) before any goal action
            # was asked for: the control never judged the misuse, so it earns no credit for it.
            r["unreached"] += 1
            continue
        r["injected"] += 1
        if mid not in t.executed_misuse:
            r["prevented"] += 1
        elif mid in t.flagged_misuse:
            r["detected"] += 1
        else:
            r["missed"] += 1
        r["damage"] += t.damage.get(mid, 0.0)
    return list(rows.values())


def task_times(log: RunLog) -> np.ndarray:
    """Time from start to end of each top-level task of the workload (its order), NaN unless
    it completed, carried no injected misuse and arrived after the warm-up: the population
    task inflation pairs across controls (the workload is the same for every control)."""
    return measured(log).task_times


def paired_inflation(mine: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(task_inflation, task_time_added_s) on the tasks that completed under both controls:
    sum of their times / sum under the reference - 1, and the mean time added per task. A
    control that fails tasks cannot look fast: its failures are in neither sum. With no time
    under the reference (zero think and step times): 0 if none was added either, else inf."""
    both = ~(np.isnan(mine) | np.isnan(reference))
    if not both.any():
        return math.nan, math.nan
    own, ref = float(mine[both].sum()), float(reference[both].sum())
    added = (own - ref) / int(both.sum())
    if ref > 0:
        return own / ref - 1.0, added
    return (0.0 if own <= 0 else math.inf), added


def compute(log: RunLog, exposure: float | None = None) -> dict:
    """The summary metrics of one run (task_inflation is filled in against `none` later).
    `exposure`: the total from `exposure_curve`, when the caller computed the curve already."""
    lo, hi = log.warmup, log.horizon
    t = measured(log)
    lat_ms = t.latencies_ms()
    n_arrived = log.workload.arrived(lo, hi)
    # Task time is measured on tasks without injected misuse, so a control that blocks injected
    # actions does not look faster than `none`: inflation is the cost to legitimate work.
    clean = t.task_times[~np.isnan(t.task_times)]
    # Time tasks waited for their agent (busy with earlier ones, up to its concurrency).
    waits = np.frombuffer(t.waits, dtype=float)
    outcomes = misuse_outcomes(log)
    tot = {k: sum(o[k] for o in outcomes)
           for k in ("injected", "prevented", "detected", "missed", "unreached")}
    if exposure is None:
        exposure = exposure_curve(log)[2]
    agent_hours = len(log.workload.agents) * (hi - lo) / 3600.0
    pdp = log.stations.get("pdp")
    if pdp is not None and pdp.free is not None:
        util = pdp.busy / (pdp.servers * (hi - lo))
    else:
        util = math.nan
    tokens = sum(1 for c in log.ledger.credentials if c.kind != "role" and c.issued >= lo)
    q = np.percentile(lat_ms, [50, 95, 99]) if len(lat_ms) else [math.nan] * 3
    return {
        "tasks": n_arrived,
        "tasks_completed": t.completed,
        "tasks_failed": t.failed,
        "tasks_ended": t.completed + t.failed,
        "actions": t.actions,
        "actions_denied": t.actions - t.executed,
        "decision_timeouts": t.timeouts,
        "decision_timeout_rate": _ratio(t.timeouts, t.actions),
        "decision_rejections": t.rejections,
        "legit_actions": t.legit,
        "legit_denied": t.legit_denied,
        "collateral_denials": t.collateral,
        "executed_actions": t.executed,
        "misuse_injected": tot["injected"],
        "misuse_prevented": tot["prevented"],
        "misuse_detected": tot["detected"],
        "misuse_missed": tot["missed"],
        "misuse_unreached": tot["unreached"],
        "misuse_caught": tot["prevented"] + tot["detected"],
        "misuse_caught_rate": _ratio(tot["prevented"] + tot["detected"], tot["injected"]),
        "damage": float(sum(o["damage"] for o in outcomes)),
        "exposure": exposure,
        "credential_exposure": credential_exposure(log),
        "standing_exposure": log.authority.standing if log.authority is not None else math.nan,
        "exposure_per_agent_hour": exposure / agent_hours if agent_hours else math.nan,
        "blast_radius": blast_radius(log),
        "false_deny_rate": _ratio(t.legit_denied, t.legit),
        "task_success_rate": _ratio(t.completed, t.completed + t.failed),
        "decision_mean_ms": float(lat_ms.mean()) if len(lat_ms) else math.nan,
        "decision_p50_ms": float(q[0]),
        "decision_p95_ms": float(q[1]),
        "decision_p99_ms": float(q[2]),
        "decision_max_ms": float(lat_ms.max()) if len(lat_ms) else math.nan,
        "task_time_mean_s": float(np.mean(clean)) if len(clean) else math.nan,
        "task_wait_mean_s": float(waits.mean()) if len(waits) else math.nan,
        "task_wait_p95_s": float(np.percentile(waits, 95)) if len(waits) else math.nan,
        "task_inflation": math.nan,  # paired with `none` later (sweeps.fill_task_inflation)
        "task_time_added_s": math.nan,
        "pdp_utilization": util,
        "tokens_issued": tokens,
        "policy_evaluations": log.policy_evaluations,
        "allowed_without_decision": t.without_decision,
        "audit_attributed": t.attributed,
        "audit_attribution_rate": _ratio(t.attributed, t.executed),
        "invisible_actions": t.invisible,
        "invisible_action_rate": _ratio(t.invisible, t.executed),
        **_review(log),
    }


def _review(log: RunLog) -> dict[str, float]:
    """Human-review metrics from the reviewer desk (NaN when the control never escalates)."""
    desk = log.review
    if desk is None:
        return dict.fromkeys(("approvals_requested", "approvals_requested_per_hour",
                              "approval_wait_p50_s", "approval_wait_p95_s", "review_timeouts",
                              "misuse_escalated", "misuse_judged", "misuse_approved_actions",
                              "misuse_approved",
                              "reviewer_utilization"), math.nan)
    waits = np.asarray(desk.waits, dtype=float)
    q = np.percentile(waits, [50, 95]) if len(waits) else [math.nan] * 2
    return {
        "approvals_requested": desk.requested,
        "approvals_requested_per_hour": desk.requested / ((log.horizon - log.warmup) / 3600.0),
        "approval_wait_p50_s": float(q[0]),
        "approval_wait_p95_s": float(q[1]),
        "review_timeouts": desk.timeouts,
        "misuse_escalated": desk.misuse_escalated,
        "misuse_judged": desk.misuse_judged,
        "misuse_approved_actions": desk.misuse_approved,
        "misuse_approved": _ratio(desk.misuse_approved, desk.misuse_judged),
        "reviewer_utilization": desk.utilization(),
    }


def latency_quantiles(log: RunLog) -> dict[str, list[float]]:
    """Decision-latency quantiles (ms) on a fixed grid, for the CDF plot."""
    lat = measured(log).latencies_ms()
    if not len(lat):
        return {"q": [], "ms": []}
    return {"q": LATENCY_QUANTILES.tolist(), "ms": np.quantile(lat, LATENCY_QUANTILES).tolist()}


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan
