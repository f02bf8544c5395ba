"""Metrics of one run (DESIGN.md section 3): exposure integrals, misuse outcomes, latency, audit.

Everything is measured after the warm-up and up to the horizon. `exposure` and `blast_radius`
come from the authority the probe measured by asking the control (authority.py);
`credential_exposure` from the ledger's credential intervals and the executed actions.
"""

from __future__ import annotations

import math
from array import array
from collections import defaultdict
from typing import Any

import numpy as np

from simharness.authority import Cumulative
from simharness.engine import COMPLETED, FAILED, REVOCATION_REASONS, A, RunLog, T
from simharness.misuse_catalogue import MISUSE_KINDS

LATENCY_QUANTILES = np.linspace(0.0, 1.0, 201)


def _credential_terms(log: RunLog) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, end, weight) of every term of `sum live W(G) - w(step executing under it)`:
    +W(G) over each credential's live span, -w(p) over each step executing under it, all
    clipped to [warm-up, horizon]. Kept in C doubles: a million-action run would otherwise
    hold millions of Python floats here."""
    lo, hi = log.warmup, log.horizon
    starts, ends, weights = array("d"), array("d"), array("d")
    creds = log.ledger.credentials
    for c in creds:
        a, b = max(c.issued, lo), min(c.end, hi)
        if c.weight > 0 and b > a:
            starts.append(a)
            ends.append(b)
            weights.append(c.weight)
    t_i, lat_i, dur_i, cred_i, allowed_i = A["time"], A["latency"], A["duration"], A["credential"], A["allowed"]
    tool_i, act_i, res_i = A["tool"], A["action"], A["resource"]
    weight = log.workload.weight
    for rec in log.actions:
        cid = rec[cred_i]
        if cid < 0 or not rec[allowed_i] or rec[dur_i] <= 0:
            continue
        c = creds[cid]
        perm = (rec[tool_i], rec[act_i], rec[res_i])
        if perm not in c.perms:
            continue
        start = rec[t_i] + rec[lat_i]
        a, b = max(start, c.issued, lo), min(start + rec[dur_i], c.end, hi)
        if b > a:
            starts.append(a)
            ends.append(b)
            weights.append(-weight.get(perm, 0.0))
    return (np.frombuffer(starts, dtype=float), np.frombuffer(ends, dtype=float),
            np.frombuffer(weights, dtype=float))


def credential_exposure(log: RunLog) -> float:
    """Integral of live credentials' W(G) minus the weight of steps executing under them."""
    starts, ends, weights = _credential_terms(log)
    # fsum, not `weights @ ...`: a BLAS dot product's rounding depends on the CPU's kernel and
    # the BLAS build, so the same run gave different last digits on two machines.
    return max(math.fsum(weights * (ends - starts)), 0.0)


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
    tasks only."""
    counted: dict[int, str] = {}
    ended = {rec[T["task"]]: rec[T["end"]] for rec in log.tasks
             if rec[T["status"]] in (COMPLETED, FAILED)}
    tasks = {t.id: t for t in log.workload.tasks}
    for m in log.workload.misuse:
        # An instance has an outcome only once all its actions had their chance: its task has
        # ended and any attacker or replay use (scheduled after the leak or the end) fell
        # inside the horizon. Censored instances are left out rather than called prevented.
        end = ended.get(m.task)
        if end is None or m.arrival < log.warmup:
            continue
        t = tasks[m.task]
        tail = max((a.think for a in (*t.attacker, *t.replay)), default=0.0)
        if end + tail <= log.horizon:
            counted[m.id] = m.kind
    requested: set[int] = set()
    executed: dict[int, bool] = {}
    flagged: dict[int, bool] = {}
    damage: dict[int, float] = defaultdict(float)
    mi, gi, al, wi = A["misuse_id"], A["goal"], A["allowed"], A["weight"]
    for idx, rec in enumerate(log.actions):
        mid = rec[mi]
        if mid < 0 or mid not in counted or not rec[gi]:
            continue
        requested.add(mid)
        if not rec[al]:
            continue
        executed[mid] = True
        damage[mid] += rec[wi]
        if idx in log.flagged:
            flagged[mid] = True
    rows: dict[str, dict[str, Any]] = {
        k: {"kind": k, "injected": 0, "prevented": 0, "detected": 0, "missed": 0, "unreached": 0,
            "damage": 0.0}
        for k in sorted(set(counted.values()), key=MISUSE_KINDS.index)}
    for mid, kind in counted.items():
        r = rows[kind]
        if mid not in requested:
            # Its task ended (a denial of legitimate work, most often) before any goal action
            # was asked for: the control never judged the misuse, so it earns no credit for it.
            r["unreached"] += 1
            continue
        r["injected"] += 1
        if not executed.get(mid):
            r["prevented"] += 1
        elif flagged.get(mid):
            r["detected"] += 1
        else:
            r["missed"] += 1
        r["damage"] += damage.get(mid, 0.0)
    return list(rows.values())


def task_times(log: RunLog) -> np.ndarray:
    """Time from start to end of each top-level task of the workload (its order), NaN unless
    it completed, carried no injected misuse and arrived after the warm-up: the population
    task inflation pairs across controls (the workload is the same for every control)."""
    out = np.full(len(log.workload.tasks), np.nan)
    at = {t.id: i for i, t in enumerate(log.workload.tasks)}
    for r in log.tasks:
        if (r[T["depth"]] == 0 and r[T["status"]] == COMPLETED and r[T["misuse_id"]] < 0
                and r[T["arrival"]] >= log.warmup):
            out[at[r[T["task"]]]] = r[T["end"]] - r[T["start"]]
    return out


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
    c = _count_actions(log)
    lat_ms = _latencies_ms(log)
    top = [r for r in log.tasks if r[T["depth"]] == 0 and r[T["arrival"]] >= lo]
    n_arrived = sum(1 for t in log.workload.tasks if lo <= t.arrival < hi)
    completed = [r for r in top if r[T["status"]] == COMPLETED]
    # Task time is measured on tasks without injected misuse, so a control that blocks injected
    # actions does not look faster than `none`: inflation is the cost to legitimate work.
    clean = [r[T["end"]] - r[T["start"]] for r in completed if r[T["misuse_id"]] < 0]
    failed = sum(1 for r in top if r[T["status"]] == FAILED)
    # Time tasks waited for their agent (busy with earlier ones, up to its concurrency).
    waits = np.array([r[T["start"]] - r[T["arrival"]] for r in top], dtype=float)
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
        "tasks_completed": len(completed),
        "tasks_failed": failed,
        "tasks_ended": len(completed) + failed,
        "actions": c["actions"],
        "actions_denied": c["actions"] - c["executed"],
        "decision_timeouts": c["timeouts"],
        "decision_timeout_rate": _ratio(c["timeouts"], c["actions"]),
        "decision_rejections": c["rejections"],
        "legit_actions": c["legit"],
        "legit_denied": c["legit_denied"],
        "collateral_denials": c["collateral"],
        "executed_actions": c["executed"],
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
        "false_deny_rate": _ratio(c["legit_denied"], c["legit"]),
        "task_success_rate": _ratio(len(completed), len(completed) + failed),
        "decision_mean_ms": float(lat_ms.mean()) if len(lat_ms) else math.nan,
        "decision_p50_ms": float(q[0]),
        "decision_p95_ms": float(q[1]),
        "decision_p99_ms": float(q[2]),
        "decision_max_ms": float(lat_ms.max()) if len(lat_ms) else math.nan,
        "task_time_mean_s": float(np.mean(clean)) if clean else math.nan,
        "task_wait_mean_s": float(waits.mean()) if len(waits) else math.nan,
        "task_wait_p95_s": float(np.percentile(waits, 95)) if len(waits) else math.nan,
        "task_inflation": math.nan,  # paired with `none` later (sweeps.fill_task_inflation)
        "task_time_added_s": math.nan,
        "pdp_utilization": util,
        "tokens_issued": tokens,
        "policy_evaluations": log.policy_evaluations,
        "allowed_without_decision": c["without_decision"],
        "audit_attributed": c["attributed"],
        "audit_attribution_rate": _ratio(c["attributed"], c["executed"]),
        "invisible_actions": c["invisible"],
        "invisible_action_rate": _ratio(c["invisible"], c["executed"]),
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


TIMEOUT_MARK = "-timeout-fail-"  # in the reason of a request a station did not answer in time
REJECT_MARK = "-queue-full-fail-"  # ... of one a full station queue turned away


def _count_actions(log: RunLog) -> dict[str, int]:
    """Action counts after warm-up in one pass (no filtered copies of a million-row log)."""
    t_i, allowed_i, mid_i = A["time"], A["allowed"], A["misuse_id"]
    ident_i, reasons_i = A["identity"], A["reasons"]
    wo_i, attr_i, vis_i = A["without_decision"], A["attributed"], A["visible"]
    flagged_ids = {log.actions[i][ident_i] for i in log.flagged}
    n = executed = legit = legit_denied = collateral = without = attributed = invisible = 0
    timeouts = rejections = 0
    for r in log.actions:
        if r[t_i] < log.warmup:
            continue
        n += 1
        without += r[wo_i]
        if r[wo_i] or not r[allowed_i]:  # a timeout is decided without the control, either way
            timeouts += TIMEOUT_MARK in r[reasons_i]
            rejections += REJECT_MARK in r[reasons_i]
        if r[allowed_i]:
            executed += 1
            attributed += r[attr_i]
            invisible += not r[vis_i]
        if r[mid_i] < 0:
            legit += 1
            if not r[allowed_i]:
                legit_denied += 1
                # Collateral: a revocation of a flagged identity that hit legitimate work.
                if r[ident_i] in flagged_ids and REVOCATION_REASONS & set(r[reasons_i].split(";")):
                    collateral += 1
    return {"actions": n, "executed": executed, "legit": legit, "legit_denied": legit_denied,
            "collateral": collateral, "without_decision": without, "attributed": attributed,
            "invisible": invisible, "timeouts": timeouts, "rejections": rejections}


def _latencies_ms(log: RunLog) -> np.ndarray:
    """Decision latency of every action after warm-up, in ms (one C double each)."""
    lat = array("d", (r[A["latency"]] for r in log.actions if r[A["time"]] >= log.warmup))
    return np.frombuffer(lat, dtype=float) * 1e3


def latency_quantiles(log: RunLog) -> dict[str, list[float]]:
    """Decision-latency quantiles (ms) on a fixed grid, for the CDF plot."""
    lat = _latencies_ms(log)
    if not len(lat):
        return {"q": [], "ms": []}
    return {"q": LATENCY_QUANTILES.tolist(), "ms": np.quantile(lat, LATENCY_QUANTILES).tolist()}


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan
