"""Metrics of one run (DESIGN.md section 3): exposure integral, misuse outcomes, latency, audit.

Everything is measured after the warm-up and up to the horizon. Exposure is computed from the
ledger's credential intervals and the executed actions with one sort of event times (O(n log n)
for the run, O(1) accounting per event).
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import defaultdict

import numpy as np

from simharness.engine import COMPLETED, FAILED, IN_FLIGHT, REVOCATION_REASONS, A, RunLog, T
from simharness.misuse_catalogue import MISUSE_KINDS

TIMELINE_POINTS = 97
LATENCY_QUANTILES = np.linspace(0.0, 1.0, 201)


def _exposure_events(log: RunLog) -> tuple[np.ndarray, np.ndarray]:
    """Event times and rate changes of `sum live W(G) - w(step executing under it)`."""
    lo, hi = log.warmup, log.horizon
    # C doubles, not lists of float objects: a million-action run would otherwise hold
    # four million Python floats here.
    times = array("d")
    deltas = array("d")
    creds = log.ledger.credentials
    for c in creds:
        if c.weight <= 0:
            continue
        a, b = max(c.issued, lo), min(c.end, hi)
        if b > a:
            times.extend((a, b))
            deltas.extend((c.weight, -c.weight))
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
            w = weight.get(perm, 0.0)
            times.extend((a, b))
            deltas.extend((-w, w))
    if not times:
        return np.array([lo, hi]), np.zeros(2)
    t = np.frombuffer(times, dtype=float)
    d = np.frombuffer(deltas, dtype=float)
    order = np.argsort(t, kind="stable")
    return t[order], d[order]


def exposure_curve(log: RunLog, points: int = TIMELINE_POINTS) -> tuple[np.ndarray, np.ndarray, float]:
    """(grid times, cumulative exposure at each, total exposure)."""
    t, d = _exposure_events(log)
    rate = np.cumsum(d)
    seg = np.diff(t) * rate[:-1]
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    total = float(cum[-1]) if len(cum) else 0.0
    grid = np.linspace(log.warmup, log.horizon, points)
    curve = np.interp(grid, t, cum, left=0.0, right=total)
    return grid, curve, max(total, 0.0)


def _busy_by_holder(log: RunLog) -> dict[str, list[tuple[float, float]]]:
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for rec in log.tasks:  # a task still running at the horizon is busy until then
        end = log.horizon if rec[T["status"]] == IN_FLIGHT else rec[T["end"]]
        spans[rec[T["identity"]]].append((rec[T["start"]], end))
    merged: dict[str, list[tuple[float, float]]] = {}
    for holder, iv in spans.items():
        iv.sort()
        out: list[list[float]] = []
        for s, e in iv:
            if out and s <= out[-1][1]:
                out[-1][1] = max(out[-1][1], e)
            else:
                out.append([s, e])
        merged[holder] = [(s, e) for s, e in out]
    return merged


def _overlap(spans: list[tuple[float, float]], starts: list[float], a: float, b: float) -> float:
    """Total length of the merged spans inside [a, b]."""
    total = 0.0
    i = max(bisect.bisect_right(starts, a) - 1, 0)
    while i < len(spans) and spans[i][0] < b:
        s, e = spans[i]
        total += max(0.0, min(e, b) - max(s, a))
        i += 1
    return total


def standing_exposure(log: RunLog) -> float:
    """Exposure accrued while the credential's holder had no task running."""
    busy = _busy_by_holder(log)
    starts = {h: [s for s, _ in iv] for h, iv in busy.items()}
    lo, hi = log.warmup, log.horizon
    total = 0.0
    for c in log.ledger.credentials:
        a, b = max(c.issued, lo), min(c.end, hi)
        if b <= a or c.weight <= 0:
            continue
        iv = busy.get(c.holder, [])
        idle = (b - a) - _overlap(iv, starts.get(c.holder, []), a, b)
        total += c.weight * idle
    return total


def blast_radius(log: RunLog) -> float:
    """E[W(G) x remaining life] of a credential stolen at a uniformly random live moment.

    Lives are censored at the horizon (a never-expiring credential counts to the horizon)."""
    lo, hi = log.warmup, log.horizon
    num = den = 0.0
    for c in log.ledger.credentials:
        a, b = max(c.issued, lo), min(c.end, hi)
        if b > a:
            length = b - a
            num += c.weight * length * length / 2
            den += length
    return num / den if den > 0 else 0.0


def misuse_outcomes(log: RunLog) -> list[dict]:
    """Per kind: injected, prevented, detected, missed, damage (instances of measured tasks)."""
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
    executed: dict[int, bool] = {}
    flagged: dict[int, bool] = {}
    damage: dict[int, float] = defaultdict(float)
    mi, gi, al, wi = A["misuse_id"], A["goal"], A["allowed"], A["weight"]
    for idx, rec in enumerate(log.actions):
        mid = rec[mi]
        if mid < 0 or mid not in counted or not rec[gi] or not rec[al]:
            continue
        executed[mid] = True
        damage[mid] += rec[wi]
        if idx in log.flagged:
            flagged[mid] = True
    rows = {k: {"kind": k, "injected": 0, "prevented": 0, "detected": 0, "missed": 0, "damage": 0.0}
            for k in sorted(set(counted.values()), key=MISUSE_KINDS.index)}
    for mid, kind in counted.items():
        r = rows[kind]
        r["injected"] += 1
        if not executed.get(mid):
            r["prevented"] += 1
        elif flagged.get(mid):
            r["detected"] += 1
        else:
            r["missed"] += 1
        r["damage"] += damage.get(mid, 0.0)
    return list(rows.values())


def compute(log: RunLog, exposure: float | None = None) -> dict:
    """The summary metrics of one run (task_inflation is filled in against `none` later).
    `exposure`: the total from `exposure_curve`, when the caller computed the curve already."""
    lo, hi = log.warmup, log.horizon
    acts = [r for r in log.actions if r[A["time"]] >= lo]
    allowed_i, mid_i = A["allowed"], A["misuse_id"]
    legit = [r for r in acts if r[mid_i] < 0]
    legit_denied = [r for r in legit if not r[allowed_i]]
    executed = [r for r in acts if r[allowed_i]]
    flagged_ids = {log.actions[i][A["identity"]] for i in log.flagged}
    collateral = sum(
        1 for r in legit_denied
        if r[A["identity"]] in flagged_ids and REVOCATION_REASONS & set(r[A["reasons"]].split(";")))
    lat_ms = np.fromiter((r[A["latency"]] for r in acts), dtype=float, count=len(acts)) * 1e3
    top = [r for r in log.tasks if r[T["depth"]] == 0 and r[T["arrival"]] >= lo]
    n_arrived = sum(1 for t in log.workload.tasks if lo <= t.arrival < hi)
    completed = [r for r in top if r[T["status"]] == COMPLETED]
    # Task time is measured on tasks without injected misuse, so a control that blocks injected
    # actions does not look faster than `none`: inflation is the cost to legitimate work.
    clean = [r[T["end"]] - r[T["start"]] for r in completed if r[T["misuse_id"]] < 0]
    failed = sum(1 for r in top if r[T["status"]] == FAILED)
    outcomes = misuse_outcomes(log)
    tot = {k: sum(o[k] for o in outcomes) for k in ("injected", "prevented", "detected", "missed")}
    if exposure is None:
        exposure = exposure_curve(log, 2)[2]
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
        "actions": len(acts),
        "actions_denied": sum(1 for r in acts if not r[allowed_i]),
        "legit_actions": len(legit),
        "legit_denied": len(legit_denied),
        "collateral_denials": collateral,
        "executed_actions": len(executed),
        "misuse_injected": tot["injected"],
        "misuse_prevented": tot["prevented"],
        "misuse_detected": tot["detected"],
        "misuse_missed": tot["missed"],
        "misuse_caught": tot["prevented"] + tot["detected"],
        "misuse_caught_rate": _ratio(tot["prevented"] + tot["detected"], tot["injected"]),
        "damage": float(sum(o["damage"] for o in outcomes)),
        "exposure": exposure,
        "standing_exposure": standing_exposure(log),
        "exposure_per_agent_hour": exposure / agent_hours if agent_hours else math.nan,
        "blast_radius": blast_radius(log),
        "false_deny_rate": _ratio(len(legit_denied), len(legit)),
        "task_success_rate": _ratio(len(completed), len(completed) + failed),
        "decision_mean_ms": float(lat_ms.mean()) if len(lat_ms) else math.nan,
        "decision_p50_ms": float(q[0]),
        "decision_p95_ms": float(q[1]),
        "decision_p99_ms": float(q[2]),
        "decision_max_ms": float(lat_ms.max()) if len(lat_ms) else math.nan,
        "task_time_mean_s": float(np.mean(clean)) if clean else math.nan,
        "task_inflation": math.nan,
        "pdp_utilization": util,
        "tokens_issued": tokens,
        "policy_evaluations": log.policy_evaluations,
        "allowed_without_decision": sum(1 for r in acts if r[A["without_decision"]]),
        "audit_attributed": sum(1 for r in executed if r[A["attributed"]]),
        "audit_attribution_rate": _ratio(sum(1 for r in executed if r[A["attributed"]]), len(executed)),
        "invisible_actions": sum(1 for r in executed if not r[A["visible"]]),
        "invisible_action_rate": _ratio(sum(1 for r in executed if not r[A["visible"]]), len(executed)),
    }


def latency_quantiles(log: RunLog) -> dict[str, list[float]]:
    lat = np.array([r[A["latency"]] for r in log.actions if r[A["time"]] >= log.warmup]) * 1e3
    if not len(lat):
        return {"q": [], "ms": []}
    return {"q": LATENCY_QUANTILES.tolist(), "ms": np.quantile(lat, LATENCY_QUANTILES).tolist()}


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan
