"""The Python API; it mirrors the command line (`simharness run`, `sweep`)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from simharness import sweep as sweeping
from simharness.loader import load_scenario, scenario_sha256
from simharness.results import Results, load_results
from simharness.spec import ScenarioSpec

__all__ = ["load_results", "load_scenario", "run", "sweep"]


def _spec(scenario: str | Path | ScenarioSpec, overrides: list[str], controls: list[str] | None
          ) -> ScenarioSpec:
    if isinstance(scenario, ScenarioSpec):
        if overrides:
            raise ValueError("overrides need a scenario file or name, not a ScenarioSpec")
        return scenario
    return load_scenario(scenario, overrides=overrides, controls=controls)


def sweep(scenario: str | Path | ScenarioSpec, grid: dict[str, list[Any]] | None = None, *,
          controls: list[str] | None = None, overrides: list[str] | None = None,
          out: str | Path | None = None, workers: int = 1, quiet: bool = True,
          force: bool = False, executor: str = "process", scheduler: str | None = None
          ) -> Results:
    """Run every grid point x control x replication; returns the results DataFrames."""
    overrides = list(overrides or [])
    base = _spec(scenario, overrides, controls)
    grid = dict(grid if grid is not None else (base.sweep or {}))
    points: list[tuple[dict[str, Any], ScenarioSpec]] = []
    for point in sweeping.expand_grid(grid):
        if not point:
            points.append((point, base))
            continue
        sets = [*overrides, *(f"{k}={_yaml_value(v)}" for k, v in point.items())]
        points.append((point, _spec(scenario, sets, controls)))
    tasks = sweeping.plan(points, controls)
    out_dir = Path(out) if out is not None else sweeping.default_out(base)
    manifest = {
        "scenario": base.name,
        "scenario_sha256": scenario_sha256(base),
        "resolved_scenario": base.model_dump(mode="json"),
        "root_seed": base.seed,
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "grid": grid,
        "controls": controls or [c.name for c in base.controls],
    }
    return sweeping.run_tasks(tasks, out_dir, list(grid), manifest, workers=workers, quiet=quiet,
                              force=force, executor=executor, scheduler=scheduler)


def run(scenario: str | Path | ScenarioSpec, *, controls: list[str] | None = None,
        overrides: list[str] | None = None, out: str | Path | None = None, workers: int = 1,
        quiet: bool = True, force: bool = False) -> Results:
    """Run a scenario (every control x replication) into a results folder."""
    return sweep(scenario, {}, controls=controls, overrides=overrides, out=out, workers=workers,
                 quiet=quiet, force=force)


def _yaml_value(v: Any) -> str:
    import json

    return v if isinstance(v, str) else json.dumps(v)
