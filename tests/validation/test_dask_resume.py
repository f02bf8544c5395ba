"""A 1,000-point sweep on a Dask LocalCluster completes, and resumes after the process running
it is killed (issue 20). Slow: run with -m slow (about two minutes on two cores)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

POINTS = 1000
TABLES = ("summary.csv", "aggregate.csv", "misuse.csv", "timeline.csv", "latency.csv")
# 40 seeds x 25 horizons of a one-agent mini scenario: 1,000 points, each one static_iam run
# and its task-inflation reference.
SWEEP = ["--grid", "seed=" + ",".join(str(s) for s in range(1, 41)),
         "--grid", "horizon=" + ",".join(f"{m}m" for m in range(6, 31)),
         "--controls", "static_iam", "--executor", "dask", "--workers", "2", "-q"]


def _scenario(tmp_path: Path) -> Path:
    from simharness.loader import dump_scenario
    from tests.conftest import make_spec

    spec = make_spec(replications=1, agents=[{
        "name": "support", "count": 1, "role": {"crm_api": ["read", "write"], "docs": ["read"]},
        "task_rate": "30/h", "tasks": {"answer_ticket": 1}}],
        tasks={"answer_ticket": {"steps": [
            {"tool": "crm_api", "action": "read", "resource": "crm"},
            {"tool": "docs", "action": "read", "resource": "wiki"},
            {"tool": "crm_api", "action": "write", "resource": "crm"}]}})
    path = tmp_path / "tiny.yaml"
    path.write_text(dump_scenario(spec), encoding="utf-8")
    return path


def _sweep(scenario: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "simharness.cli", "sweep", str(scenario),
                             "--out", str(out), *SWEEP],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def test_a_thousand_point_dask_sweep_resumes_after_a_kill(tmp_path):
    pytest.importorskip("distributed", reason="needs dask.distributed (pip install -e .[dask])")
    scenario = _scenario(tmp_path)
    killed, whole = tmp_path / "killed", tmp_path / "whole"

    proc = _sweep(scenario, killed)
    runs = killed / "runs"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        done = len(list(runs.glob("*.json"))) if runs.is_dir() else 0
        if done >= 300:  # well under way: kill the sweep, its scheduler and its workers
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"the sweep ended before it could be killed:\n{proc.stdout.read()}"
    import os

    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = len(list(runs.glob("*.json")))
    assert 300 <= saved < 2 * POINTS

    resumed = _sweep(scenario, killed)
    out, _ = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, out
    manifest = json.loads((killed / "manifest.json").read_text())
    assert manifest["runs_reused"] >= saved - 2 * 2  # files in flight at the kill may be redone
    assert manifest["runs_computed"] + manifest["runs_reused"] == 2 * POINTS

    fresh = _sweep(scenario, whole)
    out, _ = fresh.communicate(timeout=900)
    assert fresh.returncode == 0, out
    summary = (whole / "summary.csv").read_text().splitlines()
    assert len(summary) == POINTS + 1
    for name in TABLES:  # resumed or not, the same bytes
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), name
