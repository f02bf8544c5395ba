"""Determinism across processes (issue 10): the same scenario run under different
PYTHONHASHSEED values, with Python's `random` seeded differently, and with a different worker
count gives byte-identical csv files."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import MINI

ROOT = Path(__file__).resolve().parents[2]

# Run the CLI after seeding `random` (and touching hash order): nothing may depend on either.
LAUNCH = (
    "import random, sys; random.seed(int(sys.argv[1])); "
    "_ = {str(i): i for i in range(100)}; "
    "sys.argv = ['simharness', *sys.argv[2:]]; "
    "from simharness.cli import main; main()"
)


def _scenario(tmp: Path) -> Path:
    data = copy.deepcopy(MINI)
    data.update({"name": "determinism", "horizon": "1h", "warmup": "5m", "replications": 2,
                 "misuse": {"rate": 0.3},
                 "controls": [
                     {"name": "none", "model": "none"},
                     {"name": "static_iam", "model": "static_iam"},
                     {"name": "jit", "model": "jit_per_task"},
                     {"name": "pap", "model": "per_action_policy",
                      "params": {"detector": {"threshold": 0.7, "delay": "30s"},
                                 "revoke_on_deviation": True}}]})
    path = tmp / "determinism.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _run(scenario: Path, out: Path, hashseed: str, random_seed: int, workers: int) -> Path:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    r = subprocess.run(
        [sys.executable, "-c", LAUNCH, str(random_seed), "run", str(scenario), "--out", str(out),
         "--workers", str(workers), "--quiet"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def test_csv_bytes_identical_across_hash_seeds_random_and_workers(tmp_path):
    scenario = _scenario(tmp_path)
    a = _run(scenario, tmp_path / "a", "0", 1, 1)
    b = _run(scenario, tmp_path / "b", "4242", 987654321, 2)
    names = sorted(p.name for p in a.glob("*.csv"))
    assert "summary.csv" in names
    assert names == sorted(p.name for p in b.glob("*.csv"))
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
