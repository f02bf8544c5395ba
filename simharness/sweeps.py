"""Runs: expand sweep points x controls x replications, execute them (serial, a process pool or
Dask), save each run atomically, skip finished ones, and write the results tables.

Executors share one interface, `_map(fn, tasks, ...)`, yielding results in completion order;
every result is saved as `runs/<key>.json` the moment it arrives and the tables are rebuilt from
those files in the sweep's order, so the output is byte-identical whatever ran it.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from simharness import audit as auditing
from simharness import estimate, metrics, reference, results
from simharness.controls.base import World, make
from simharness.engine import simulate
from simharness.rng import replication_int_seed
from simharness.spec import ControlEntry, ScenarioSpec
from simharness.traces import export as otel_export
from simharness.workload import build_workload

REFERENCE = "none"


@dataclass(frozen=True)
class RunTask:
    """One simulation to perform: a sweep point's spec, a control, a replication."""

    key: str
    spec: ScenarioSpec
    point: tuple[tuple[str, Any], ...]
    entry: ControlEntry
    replication: int
    hidden: bool = False  # a `none` reference run for task inflation, not reported
    digest: bool = True  # record the workload digest (once per replication: the first control)

    @property
    def control(self) -> str:
        return self.entry.name


def expand_grid(grid: dict[str, list[Any]] | None) -> list[dict[str, Any]]:
    """Cartesian product of a grid, in the order given ({} -> one empty point)."""
    if not grid:
        return [{}]
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]


def run_one(task: RunTask, audit_dir: str | None = None,
            audit_types: Mapping[str, Any] | None = None, otel_dir: str | None = None,
            probe: bool = True) -> dict:
    """Simulate one run and return its RunResult (see results.py). With `audit_dir`, also write
    the action log of a reported run to `audit_dir/<key>.parquet` (see audit.py); with
    `otel_dir`, as OTLP JSON spans to `otel_dir/<control>-r<rep>-<key>.otlp.jsonl` (see
    traces/export.py). probe=False: no authority probing (exposure and blast radius NaN; what
    the probing costs is measured this way, bench.probe_overhead)."""
    spec = task.spec
    entry = task.entry
    workload = build_workload(spec, task.replication)
    digest = workload.digest() if task.digest else None
    if task.hidden and reference.arithmetic_applies(workload):
        # Only its task times are used (task inflation): arithmetic, not a simulation.
        return {"key": task.key, "row": _identity_columns(task), "workload_digest": digest,
                "facts": {}, "task_times": _encode(reference.none_task_times(workload))}
    control = make(entry.name, entry.model, entry.params, World(spec))
    exporting = otel_dir is not None and not task.hidden
    parents = otel_export.delegation_parents(workload) if exporting else {}
    # The audit file is written as the run logs, and only an OTLP export needs the whole log
    # afterwards: otherwise the run keeps running totals, not its log (tally.py).
    writer = (auditing.run_writer(auditing.run_path(audit_dir, task.key), entry.name,
                                  task.replication, dict(task.point), audit_types or {})
              if audit_dir is not None and not task.hidden else contextlib.nullcontext())
    with writer as write:
        log = simulate(workload, control, keep_plans=False, probe=probe, keep_log=exporting,
                       on_chunk=write)
    row = _identity_columns(task)
    grid, curve, exposure = metrics.exposure_curve(log)  # once: the timeline and the total
    row.update(metrics.compute(log, exposure))
    result = {
        "key": task.key,
        "row": row,
        "misuse": metrics.misuse_outcomes(log),
        "timeline": {"t": grid.tolist(), "exposure": curve.tolist()},
        "latency_ms": metrics.latency_quantiles(log),
        "workload_digest": digest,
        "facts": control.facts(),
        # Per task (workload order), for task inflation paired with `none`: base64 float64.
        "task_times": _encode(metrics.task_times(log)),
    }
    if exporting:
        assert otel_dir is not None
        otel_export.write_run(otel_export.run_path(otel_dir, entry.name, task.replication, task.key), log, parents, spec.name,
                              entry.name, task.replication)
    return result


def _identity_columns(task: RunTask) -> dict[str, Any]:
    """The columns that say which run a summary row is."""
    return {"scenario": task.spec.name, "control": task.entry.name,
            "replication": task.replication,
            "seed": replication_int_seed(task.spec.seed, task.replication), **dict(task.point)}


def _encode(times: np.ndarray) -> str:
    return base64.b64encode(times.tobytes()).decode("ascii")


def plan(points: list[tuple[dict[str, Any], ScenarioSpec]], controls: list[str] | None = None
         ) -> list[RunTask]:
    """Every run of a sweep in report order; adds hidden `none` runs when none is absent."""
    version = results.code_version()
    tasks: list[RunTask] = []
    for point, spec in points:
        entries = [spec.control(n) for n in controls] if controls else list(spec.controls)
        sha = scenario_hash(spec)
        # Task inflation is measured against `none` on the same workload: run it unreported
        # when the user did not ask for it.
        hidden = all(e.name != REFERENCE for e in entries)
        if hidden:
            entries.append(ControlEntry(name=REFERENCE, model=REFERENCE))
        for position, entry in enumerate(entries):
            for rep in range(spec.replications):
                key = results.run_key(sha, entry.name, {"model": entry.model, **entry.params}, rep,
                                      spec.seed, point, version)
                # The workload is the same for every control of a replication (common random
                # numbers): its digest is recorded with the first control's run only.
                tasks.append(RunTask(key, spec, tuple(point.items()), entry, rep,
                                     hidden=hidden and entry.name == REFERENCE,
                                     digest=position == 0))
    return tasks


def scenario_hash(spec: ScenarioSpec) -> str:
    from simharness.loader import scenario_sha256

    return scenario_sha256(spec)


class Progress:
    """Progress with ETA over runs on stderr, shown once the sweep takes over a second.

    On a terminal: one line redrawn with a carriage return (at most five times a second).
    Elsewhere (a log file, CI): a plain line at each further 10 % of the runs or every
    `interval` seconds, whichever comes first, and a last line when done.
    """

    def __init__(self, total: int, quiet: bool, stream=None, interval: float = 5.0):
        self.total, self.done, self.skipped, self.quiet = total, 0, 0, quiet
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.t0 = time.monotonic()
        self._last = self.t0
        self._next_tenth = 1
        self._shown = False

    def step(self, skipped: bool = False) -> None:
        """One more run finished (or `skipped`: found already saved; not used for the ETA)."""
        self.done += 1
        self.skipped += skipped
        if self.quiet or self.total <= 0:
            return
        now = time.monotonic()
        final = self.done == self.total
        tenth = self.done * 10 // self.total
        if final:
            due = self._shown or now - self.t0 >= 1.0
        elif now - self.t0 < 1.0:
            due = False
        elif self.tty:
            due = now - self._last >= 0.2
        else:
            due = tenth >= self._next_tenth or now - self._last >= self.interval
        if not due:
            return
        self._last = now
        self._next_tenth = tenth + 1
        self._shown = True
        self._write(now, final)

    def _write(self, now: float, final: bool) -> None:
        elapsed = now - self.t0
        rate = (self.done - self.skipped) / max(elapsed, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else math.inf
        text = f"{self.done}/{self.total} runs  {elapsed:5.1f}s elapsed, ETA {eta:5.1f}s"
        if self.tty:
            width = 30
            filled = int(width * self.done / self.total)
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text} ")
            if final:
                self.stream.write("\n")
        else:
            self.stream.write(f"progress: {100 * self.done // self.total:3d}% {text}\n")
        self.stream.flush()


def execute(tasks: list[RunTask], out: results.ResultsDir, workers: int = 1, quiet: bool = True,
            force: bool = False, executor: str = "process", scheduler: str | None = None,
            on_result: Callable[[dict], None] | None = None, audit: bool = False,
            otel: str | None = None) -> int:
    """Run every task not already saved in `out`; returns how many were computed.

    With `audit` (or `otel`, a folder), a reported run whose audit (or OTLP) file is missing is
    computed again too."""
    fn: Callable[[RunTask], dict] = run_one
    if audit or otel is not None:
        types_ = auditing.sweep_types(dict(t.point) for t in tasks) if audit else None
        fn = partial(run_one, audit_dir=str(out.path) if audit else None, audit_types=types_,
                     otel_dir=None if otel is None else str(otel))

    def needed(t: RunTask) -> bool:
        if force or not out.has(t.key):
            return True
        if t.hidden:
            return False
        return ((audit and not auditing.run_path(out.path, t.key).is_file())
                or (otel is not None and not otel_export.run_path(otel, t.control, t.replication, t.key).is_file()))

    todo = [t for t in tasks if needed(t)]
    if workers != 1:
        # Longest runs first (estimated actions; hidden references are arithmetic): the last
        # run to finish is then a short one, so workers finish together. The tables do not
        # depend on the order runs are computed in.
        todo.sort(key=lambda t: 0.0 if t.hidden else -estimate.actions_per_run(t.spec))
    progress = Progress(len(tasks), quiet)
    for _ in range(len(tasks) - len(todo)):
        progress.step(skipped=True)
    for result in _map(fn, todo, workers, executor, scheduler):
        out.save_run(result)
        if on_result is not None:
            on_result(result)
        progress.step()
    return len(todo)


EXECUTORS = ("process", "dask")


def _map(fn: Callable[[RunTask], dict], todo: list[RunTask], workers: int, executor: str,
         scheduler: str | None) -> Iterable[dict]:
    """Results of `fn` over `todo` in completion order, on the chosen executor."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose {' or '.join(EXECUTORS)}")
    if executor == "dask":
        from simharness.distributed import dask_map

        yield from dask_map(fn, todo, scheduler, workers=workers or None)
        return
    if scheduler is not None:
        raise ValueError("--scheduler needs --executor dask")
    if workers <= 1 or len(todo) <= 1:
        for t in todo:
            yield fn(t)
        return
    pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), initializer=_worker_init,
                               initargs=(os.getpid(),))
    try:
        futures = [pool.submit(fn, t) for t in todo]
        for f in as_completed(futures):
            yield f.result()
    except BaseException:
        # Ctrl-C, a failed run, or the caller stopped: waiting for the queued runs (what
        # `with pool` does) would hang the interrupt; finished runs are saved already.
        _stop(pool)
        raise
    pool.shutdown()


def _worker_init(parent: int) -> None:
    """In each pool worker: leave SIGINT to the parent (it cancels the pool), and exit when
    the parent is gone (killed with SIGKILL, it cannot stop its workers itself)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="simharness-parent-watch", daemon=True).start()


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel queued runs and end the running ones now. A second Ctrl-C (a terminal sends one
    per key press, often two at once) is ignored meanwhile: cutting this short would leave the
    workers running and the interpreter's exit waiting for them."""
    try:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals are not ours to change
        old = None
    try:
        procs = list((getattr(pool, "_processes", None) or {}).values())  # no public API for it
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join(timeout=5)
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)


def _times(run: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(run.get("task_times", "")), dtype=np.float64)


def fill_task_inflation(out: results.ResultsDir, tasks: list[RunTask]) -> dict[str, dict]:
    """task_inflation and task_time_added_s of every run against `none` on the same workload
    (same point, replication), on the tasks both completed (metrics.paired_inflation).
    Returns every run's result by key (loaded once here, reused for the manifest)."""
    runs = {t.key: out.load_run(t.key) for t in tasks}
    ref: dict[tuple, np.ndarray] = {}
    for t in tasks:
        if t.control == REFERENCE:
            ref[(t.point, t.replication)] = _times(runs[t.key])
    for t in tasks:
        r = runs[t.key]
        base = ref.get((t.point, t.replication))
        mine = _times(r)
        if base is None or len(base) != len(mine):
            value = added = math.nan
        else:
            value, added = metrics.paired_inflation(mine, base)
        if t.control == REFERENCE:
            value = added = 0.0
        if not (_same(r["row"].get("task_inflation"), value)
                and _same(r["row"].get("task_time_added_s"), added)):
            r["row"]["task_inflation"] = value
            r["row"]["task_time_added_s"] = added
            out.save_run(r)
    return runs


def _same(old: Any, new: float) -> bool:
    return old == new or (isinstance(old, float) and math.isnan(old) and math.isnan(new))


def run_tasks(tasks: list[RunTask], out_dir: str | Path, sweep_cols: list[str], manifest: dict,
              workers: int = 1, quiet: bool = True, force: bool = False, executor: str = "process",
              scheduler: str | None = None, audit: bool = False, otel: str | None = None
              ) -> results.Results:
    """Claim the folder, execute, then write manifest and tables. The tables depend only on
    the saved runs."""
    with results.claim_folder(out_dir, manifest.get("scenario")) as out:
        return _run_into(out, tasks, sweep_cols, manifest, workers, quiet, force, executor,
                         scheduler, audit, otel)


def _run_into(out: results.ResultsDir, tasks: list[RunTask], sweep_cols: list[str],
              manifest: dict, workers: int, quiet: bool, force: bool, executor: str,
              scheduler: str | None, audit: bool, otel: str | None = None) -> results.Results:
    t0 = time.monotonic()
    computed = execute(tasks, out, workers, quiet, force, executor, scheduler, audit=audit,
                       otel=otel)
    runs = fill_task_inflation(out, tasks)
    visible = [t.key for t in tasks if not t.hidden]
    digests = {f"{dict(t.point)}|{t.replication}": runs[t.key].get("workload_digest")
               for t in tasks if t.control == tasks[0].control}
    man = {
        **results.manifest_base(),
        **manifest,
        # `facts`: what a control determined at run time (e.g. a measured PDP service time).
        "runs": {t.key: {"control": t.control, "replication": t.replication, "point": dict(t.point),
                         "hidden": t.hidden, "status": "done",
                         **({"facts": runs[t.key]["facts"]} if runs[t.key].get("facts") else {})}
                 for t in tasks},
        "runs_computed": computed,
        "runs_reused": len(tasks) - computed,
        "wall_seconds": round(time.monotonic() - t0, 3),
        "workload_digests": digests,
        "executor": executor,
        "audit": audit,
    }
    if audit:
        auditing.merge(out.path, visible, auditing.sweep_types(dict(t.point) for t in tasks))
    out.write_manifest(man)
    return out.write_tables(visible, sweep_cols)


def default_out(spec: ScenarioSpec) -> Path:
    """results/<scenario>-<timestamp>."""
    return Path("results") / f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def default_workers() -> int:
    return os.cpu_count() or 1

