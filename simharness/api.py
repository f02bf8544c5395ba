"""The Python API; it mirrors the command line (`simharness run`, `sweep`)."""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from simharness import sweeps as sweeping
from simharness.estimate import DEFAULT_MAX_ACTIONS, work_problem
from simharness.loader import Problem, ScenarioError, dump_scenario, load_scenario, scenario_sha256
from simharness.results import Results, load_results
from simharness.spec import ScenarioSpec

__all__ = ["load_results", "load_scenario", "run", "sweep"]


def _spec(scenario: str | Path | ScenarioSpec, overrides: list[str], controls: list[str] | None
          ) -> ScenarioSpec:
    if isinstance(scenario, ScenarioSpec):
        if not overrides and not controls:
            return scenario
        # Overrides go through the loader (validation, messages): round-trip the resolved spec.
        with tempfile.TemporaryDirectory(prefix="simharness-") as tmp:
            path = Path(tmp) / f"{scenario.name}.yaml"
            path.write_text(dump_scenario(scenario), encoding="utf-8")
            return load_scenario(path, overrides=overrides, controls=controls)
    return load_scenario(scenario, overrides=overrides, controls=controls)


def sweep(scenario: str | Path | ScenarioSpec, grid: dict[str, list[Any]] | None = None, *,
          controls: list[str] | None = None, overrides: list[str] | None = None,
          out: str | Path | None = None, workers: int = 1, quiet: bool = True,
          force: bool = False, executor: str = "process", scheduler: str | None = None,
          audit: bool = False, max_actions: float = DEFAULT_MAX_ACTIONS,
          otel: str | Path | None = None) -> Results:
    """Run every grid point x control x replication; returns the results DataFrames.

    `grid` maps dotted paths to values (their cartesian product is swept, in the order given);
    without one the scenario's `sweep:` block is used; `{}` runs the scenario as is. Every point
    is loaded and checked before anything runs. `executor` is "process" (a pool of `workers`
    processes) or "dask" (`scheduler` address, or a LocalCluster of `workers` processes);
    `audit` also writes the action log to `actions.parquet` (extra `parquet`); `otel` (a folder)
    writes each reported run as OTLP JSON spans, `<control>-r<rep>-<key>.otlp.jsonl`. A point whose
    runs would each simulate more than `max_actions` actions (estimated) is refused with a
    ScenarioError before anything runs.
    """
    if executor not in sweeping.EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose {' or '.join(sweeping.EXECUTORS)}")
    if audit:
        from simharness.audit import require

        require()
    if executor == "dask":
        from simharness.distributed import require

        require()
    overrides = list(overrides or [])
    base = _spec(scenario, overrides, controls)
    grid = dict(grid if grid is not None else (base.sweep or {}))
    for path, values in grid.items():
        if not isinstance(values, list | tuple) or not values:
            raise ValueError(f"sweep {path!r}: give a non-empty list of values, got {values!r}")
    points: list[tuple[dict[str, Any], ScenarioSpec]] = []
    for point in sweeping.expand_grid(grid):
        if not point:
            points.append((point, base))
            continue
        sets = [*overrides, *(f"{k}={_yaml_value(v)}" for k, v in point.items())]
        points.append((point, _spec(scenario, sets, controls)))
    where = base.name if isinstance(scenario, ScenarioSpec) else str(scenario)
    too_much = [Problem(where, None, None, ", ".join(f"{k}={v}" for k, v in point.items()), why)
                for point, spec in points if (why := work_problem(spec, max_actions))]
    if too_much:
        raise ScenarioError(too_much)
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
        "controls_resolved": _resolved_controls(base),
    }
    return sweeping.run_tasks(tasks, out_dir, list(grid), manifest, workers=workers, quiet=quiet,
                              force=force, executor=executor, scheduler=scheduler, audit=audit,
                              otel=None if otel is None else str(otel))


def run(scenario: str | Path | ScenarioSpec, *, controls: list[str] | None = None,
        overrides: list[str] | None = None, out: str | Path | None = None, workers: int = 1,
        quiet: bool = True, force: bool = False, executor: str = "process",
        scheduler: str | None = None, audit: bool = False,
        max_actions: float = DEFAULT_MAX_ACTIONS, otel: str | Path | None = None) -> Results:
    """Run a scenario (every control x replication) into a results folder."""
    return sweep(scenario, {}, controls=controls, overrides=overrides, out=out, workers=workers,
                 quiet=quiet, force=force, executor=executor, scheduler=scheduler, audit=audit,
                 max_actions=max_actions, otel=otel)


def _resolved_controls(spec: ScenarioSpec) -> dict[str, Any]:
    """Every control's model and params with the model's defaults filled in (the resolved
    scenario has only what the files said)."""
    from simharness.controls.base import get_model

    return {c.name: {"model": c.model,
                     "params": get_model(c.model).Params.model_validate(c.params).model_dump(
                         mode="json", by_alias=True)}
            for c in spec.controls}


def _yaml_value(v: Any) -> str:
    # JSON is YAML: the override parses back to exactly `v` ("on", "1e3" stay strings).
    return json.dumps(v)
