"""Kill test: SIGKILL a sweep midway, run it again: only the missing runs are computed and the
final tables equal an uninterrupted sweep's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import simharness

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")

OVERRIDES = ["replications=3", "horizon=2h", "misuse.rate=0.2"]
GRID = {"agents.0.count": [20, 40]}
CONTROLS = "none,static_iam"
TOTAL = 2 * 2 * 3
TABLES = ("summary.csv", "aggregate.csv", "misuse.csv", "timeline.csv", "latency.csv")


def _command(out: Path, *extra: str) -> list[str]:
    sets = [a for s in OVERRIDES for a in ("--set", s)]
    return [sys.executable, "-m", "simharness.cli", "sweep", "baseline", "--grid",
            "agents.0.count=20,40", "--controls", CONTROLS, *sets, "--workers", "1", "-q",
            "--out", str(out), *extra]


def _finished(out: Path) -> int:
    runs = out / "runs"
    return sum(1 for p in runs.glob("*.json") if not p.name.startswith(".")) if runs.is_dir() else 0


def _kill_midway(out: Path) -> int:
    proc = subprocess.Popen(_command(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _finished(out) < 3:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "no run finished in time"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return _finished(out)


def test_a_killed_sweep_resumes_with_only_the_missing_runs(tmp_path):
    reference = tmp_path / "reference"
    simharness.sweep("baseline", GRID, controls=CONTROLS.split(","), overrides=OVERRIDES,
                     out=reference)

    out = tmp_path / "killed"
    done = _kill_midway(out)
    assert 0 < done < TOTAL, done
    assert not (out / "summary.csv").exists()  # tables only once every run is in

    subprocess.run(_command(out), check=True, capture_output=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["runs_computed"], manifest["runs_reused"]) == (TOTAL - done, done)
    for name in TABLES:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    print(f"\nkilled after {done}/{TOTAL} runs; the re-run computed {TOTAL - done}")

    subprocess.run(_command(out, "--force"), check=True, capture_output=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["runs_computed"] == TOTAL
    for name in TABLES:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
