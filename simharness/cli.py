"""The `simharness` command line (typer). Bad input exits 2 with file:line:col messages."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from simharness.loader import ScenarioError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Simulate authorization controls on autonomous agents and compare them.")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"simharness {version('simharness')}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="print the version and exit")] = False
          ) -> None:
    """Simulate authorization controls on autonomous agents and compare them."""

ScenarioArg = Annotated[str, typer.Argument(help="a scenario file, or the name of a shipped one")]
ControlsOpt = Annotated[str | None, typer.Option("--controls", help="comma-separated control names")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override: dotted.path=value")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="results folder")]
OtelOpt = Annotated[Path | None, typer.Option(
    "--otel", help="also write each run as OTLP JSON spans (GenAI conventions) into this folder")]


def _fail(problems: object) -> None:
    typer.echo(str(problems), err=True)
    raise typer.Exit(2)


def _overrides(sets: list[str] | None, replications: int | None, seed: int | None,
               horizon: str | None, engine: str | None = None) -> list[str]:
    out = list(sets or [])
    if engine is not None:
        if engine not in ("kernel", "simpy"):
            _fail(f"--engine: {engine!r} is not an event loop; choose kernel or simpy")
        out.append(f"engine={engine}")
    if replications is not None:
        out.append(f"replications={replications}")
    if seed is not None:
        out.append(f"seed={seed}")
    if horizon is not None:
        out.append(f"horizon={_horizon(horizon)}")
    return out


def _horizon(text: str) -> str:
    """--horizon checked here, so that its errors name the option; a bare number is refused
    (in a scenario file it means seconds, which on the command line is rarely meant)."""
    from simharness.units import parse_duration

    try:
        float(text)
    except ValueError:
        pass
    else:
        _fail(f"--horizon: give a unit, e.g. '{text}h' or '{text}s' (a bare number would be "
              "seconds)")
    try:
        parse_duration(text)
    except ValueError as e:
        _fail(f"--horizon: {e}")
    return text


def _controls(value: str | None) -> list[str] | None:
    return [c.strip() for c in value.split(",") if c.strip()] if value else None


ReplicationsOpt = Annotated[int | None, typer.Option(min=1)]
SeedOpt = Annotated[int | None, typer.Option(min=0)]
HorizonOpt = Annotated[str | None, typer.Option(help="e.g. 8h")]
WorkersOpt = Annotated[int, typer.Option(min=0, help="parallel processes (0: one per core)")]
ForceOpt = Annotated[bool, typer.Option(help="recompute runs already in the folder")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q")]
ExecutorOpt = Annotated[str, typer.Option(help="process (local pool) or dask")]
SchedulerOpt = Annotated[str | None, typer.Option(
    help="Dask scheduler address (default: a LocalCluster)")]
AuditOpt = Annotated[bool, typer.Option("--audit", help="also write the action log to actions.parquet")]
EngineOpt = Annotated[str | None, typer.Option(
    "--engine", help="event loop: kernel (fast, default) or simpy (the reference)")]
MaxActionsOpt = Annotated[float | None, typer.Option(
    "--max-actions", min=1, help="cap on the estimated actions of one run (default 2,000,000)")]


PLAN_FOLLOWING_NOTICE = (
    "notice: {name} sets neither `behaviour` nor `declared_scope`: agents follow their plans "
    "and controls know them, so per-task and per-action controls cannot misjudge legitimate "
    "work here (see README, Behaviour and declared scope)")


def _simulate(scenario: str, grid: dict[str, list] | None, controls: str | None,
              overrides: list[str], out: Path | None, workers: int, quiet: bool, force: bool,
              executor: str, scheduler: str | None, audit: bool,
              max_actions: float | None, otel: Path | None = None) -> None:
    """What `run` (grid None) and `sweep` share: check options, run, print the headline table."""
    from simharness import advice, api, loader, sweeps
    from simharness.audit import MissingExtraError
    from simharness.estimate import DEFAULT_MAX_ACTIONS
    from simharness.results import OutputFolderError
    from simharness.tables import headline_table

    if executor not in sweeps.EXECUTORS:
        _fail(f"--executor {executor!r}: choose {' or '.join(sweeps.EXECUTORS)}")
    if scheduler is not None and executor != "dask":
        _fail("--scheduler needs --executor dask")
    selected = _controls(controls)
    if otel is not None and otel.exists() and not otel.is_dir():
        _fail(f"--otel {otel}: is a file; give a folder for the OTLP files")
    try:
        spec = loader.load_scenario(scenario, overrides, selected)
        if grid is not None and not grid and not spec.sweep:
            _fail(f"{scenario}: nothing to sweep: give --grid dotted.path=v1,v2 or a `sweep:` block")
        out = out or sweeps.default_out(spec)
        if spec.follows_plans:
            typer.echo(PLAN_FOLLOWING_NOTICE.format(name=spec.name), err=True)
        raw = loader.load_yaml(loader.find_scenario(scenario))[0]
        for line in advice.before_run(spec, raw):
            typer.echo(f"warning: {line}", err=True)
        # run: no grid; sweep: --grid, else the scenario's `sweep:` block (api.sweep's None).
        # api.sweep loads and checks every grid point before running anything.
        res = api.sweep(scenario, {} if grid is None else (grid or None), controls=selected,
                        overrides=overrides, out=out, workers=workers or sweeps.default_workers(),
                        quiet=quiet, force=force, executor=executor, scheduler=scheduler,
                        audit=audit, max_actions=max_actions or DEFAULT_MAX_ACTIONS, otel=otel)
    except ScenarioError as e:
        _fail(e)
    except (MissingExtraError, OutputFolderError) as e:
        _fail(f"error: {e}")
    except KeyboardInterrupt:
        # Caught here: click would turn it into "Aborted!" before main() could say this.
        typer.echo("\ninterrupted: finished runs are saved; run the same command again to "
                   "resume", err=True)
        # Exit now: finished runs are on disk (atomic writes), and the interpreter's exit
        # hooks could wait for pool workers a second Ctrl-C left behind.
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(130)
    if not quiet:
        typer.echo(headline_table(res.aggregate))
    for line in advice.after_run(spec, res.aggregate, res.misuse):
        typer.echo(f"warning: {line}", err=True)
    typer.echo(f"results: {out}")


@app.command()
def run(
    scenario: ScenarioArg,
    controls: ControlsOpt = None,
    replications: ReplicationsOpt = None,
    seed: SeedOpt = None,
    horizon: HorizonOpt = None,
    set_: SetOpt = None,
    out: OutOpt = None,
    workers: WorkersOpt = 0,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    executor: ExecutorOpt = "process",
    scheduler: SchedulerOpt = None,
    audit: AuditOpt = False,
    max_actions: MaxActionsOpt = None,
    engine: EngineOpt = None,
    otel: OtelOpt = None,
) -> None:
    """Run a scenario and print what answers its question (its `answer:`): the controls
    compared (default), its sweep, its budget, or the bound on its injection cases."""
    from simharness import loader

    overrides = _overrides(set_, replications, seed, horizon, engine)
    try:
        spec = loader.load_scenario(scenario, overrides, _controls(controls))
    except ScenarioError as e:
        _fail(e)
    answer = "controls" if controls else spec.answer  # --controls: the user's comparison
    if answer != "controls":
        typer.echo(f"{spec.name} answers its question with its {answer} "
                   f"(`answer: {answer}`; --controls compares controls instead)", err=True)
    if answer == "sweep":
        _simulate(scenario, {}, controls, overrides, out, workers, quiet, force, executor,
                  scheduler, audit, max_actions, otel)
    elif answer == "budget":
        assert spec.budget is not None  # validation requires it
        b = spec.budget
        budget(scenario, control=b.control, param=b.param, slo=list(b.slo),
               lo=None if b.lo is None else str(b.lo), hi=None if b.hi is None else str(b.hi),
               replications=replications, set_=list(set_ or []) + (
                   [f"seed={seed}"] if seed is not None else []) + (
                   [f"horizon={horizon}"] if horizon is not None else []))
    elif answer == "bound":
        bound([scenario], controls=None, per_injection=False, out=None)
    else:
        _simulate(scenario, None, controls, overrides, out, workers, quiet, force, executor,
                  scheduler, audit, max_actions, otel)


@app.command("sweep")
def sweep_cmd(
    scenario: ScenarioArg,
    grid: Annotated[list[str] | None, typer.Option("--grid", help="dotted.path=v1,v2,...")] = None,
    controls: ControlsOpt = None,
    replications: ReplicationsOpt = None,
    seed: SeedOpt = None,
    horizon: HorizonOpt = None,
    set_: SetOpt = None,
    out: OutOpt = None,
    workers: WorkersOpt = 0,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    executor: ExecutorOpt = "process",
    scheduler: SchedulerOpt = None,
    audit: AuditOpt = False,
    max_actions: MaxActionsOpt = None,
    engine: EngineOpt = None,
    otel: OtelOpt = None,
) -> None:
    """Run a parameter grid (cartesian product) x controls x replications."""
    parsed: dict[str, list] = {}
    for g in grid or []:
        path, eq, values = g.partition("=")
        if not eq or not path or not values:
            _fail(f"--grid {g!r}: expected dotted.path=v1,v2,...")
        parsed[path.strip()] = _grid_values(g, len(path) + 1)
    _simulate(scenario, parsed, controls, _overrides(set_, replications, seed, horizon, engine), out,
              workers, quiet, force, executor, scheduler, audit, max_actions, otel)


def _grid_values(option: str, start: int) -> list:
    """The comma-separated YAML values of a --grid option; bad YAML exits 2 with its column."""
    import yaml

    values = []
    for value in option[start:].split(","):
        try:
            values.append(yaml.safe_load(value))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            col = start + 1 + (mark.column if mark is not None else 0)
            problem = getattr(e, "problem", None) or "invalid YAML"
            _fail(f"--grid {option!r}: column {col}: value {value!r}: {problem} (quote a "
                  "value with YAML syntax in it)")
        start += len(value) + 1
    return values


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(
                 help="scenario, control profile or policy (rules YAML, .cedar, .rego) files")],
             max_actions: MaxActionsOpt = None) -> None:
    """Check files as a run would; print every problem as file:line:col: path: message."""
    from simharness.loader import validate_files

    problems = validate_files([str(f) for f in files], max_actions)
    if problems:
        _fail("\n".join(map(str, problems)))
    for f in files:
        typer.echo(f"{f}: ok")


@app.command()
def schema(profile: Annotated[bool, typer.Option(
        "--profile", help="the schema of control profiles (controls/*.yaml) instead")] = False
           ) -> None:
    """Print the JSON Schema of scenario files (for editors and CI)."""
    from simharness.schema import profile_schema, scenario_schema

    typer.echo(json.dumps(profile_schema() if profile else scenario_schema(), indent=2))


@app.command("list")
def list_cmd(what: Annotated[str, typer.Argument(help="controls | scenarios | misuse | metrics")]) -> None:
    """List control models and profiles, shipped scenarios, misuse kinds or metrics."""
    if what == "controls":
        from simharness.controls.base import registered
        from simharness.loader import data_dir, list_profiles

        typer.echo("models:")
        for name, cls in registered().items():
            typer.echo(f"  {name:20} {cls.description}")
        typer.echo("profiles:")
        for name, path in list_profiles([data_dir("controls")]).items():
            import yaml

            desc = (yaml.safe_load(path.read_text()) or {}).get("description", "")
            typer.echo(f"  {name:20} {desc}")
    elif what == "scenarios":
        from simharness.loader import list_scenarios

        for name, desc in list_scenarios():
            typer.echo(f"{name:24} {desc}")
    elif what == "misuse":
        from simharness.misuse_catalogue import CATALOGUE, standards_ids

        for k in CATALOGUE.values():
            typer.echo(f"{k.name:22} {standards_ids(k.name):34} {k.summary}")
    elif what == "metrics":
        from simharness.metric_catalogue import METRICS

        for m in METRICS:
            typer.echo(f"{m.name:26} {m.unit:28} {m.description}")
    else:
        from simharness.spec import did_you_mean

        _fail(f"list: unknown {what!r}{did_you_mean(what, ['controls', 'scenarios', 'misuse', 'metrics'])}; "
              "choose controls, scenarios, misuse or metrics")


@app.command()
def plot(directory: Annotated[Path, typer.Argument(help="a results folder")]) -> None:
    """Write the figures of a results folder to DIR/plots/."""
    from simharness.plots import plot_dir

    for path in plot_dir(directory):
        typer.echo(str(path))


@app.command()
def report(directory: Annotated[Path, typer.Argument(help="a results folder")]) -> None:
    """Write DIR/report.html (self-contained) and DIR/report.md."""
    from simharness.report import write_report

    for path in write_report(directory):
        typer.echo(str(path))


@app.command()
def bench(
    controls: ControlsOpt = None,
    policy: Annotated[str | None, typer.Option(help="a rules file for per_action_policy")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write results as JSON")] = None,
    compare: Annotated[Path | None, typer.Option("--compare", help="baseline JSON")] = None,
    max_regression: Annotated[str, typer.Option(help="allowed slow-down, e.g. 25%")] = "25%",
    n: Annotated[int, typer.Option(min=1, help="timing rounds")] = 50,
    markdown: Annotated[Path | None, typer.Option(help="also write a markdown summary")] = None,
) -> None:
    """Micro-benchmark decide() of each control; exit 1 on regression against --compare, 2 on a
    bad baseline or limit."""
    from simharness.bench import BenchInputError, bench_main

    try:
        code = bench_main(controls=_controls(controls), policy=policy, json_out=json_out,
                          compare_to=compare, max_regression=max_regression, n=n,
                          markdown_out=markdown)
    except BenchInputError as e:
        _fail(f"bench: {e}")
    raise typer.Exit(code)


@app.command("diff-policy")
def diff_policy_cmd(
    old: Annotated[Path, typer.Argument(help="the current policy file")],
    new: Annotated[Path, typer.Argument(help="the proposed policy file")],
    scenario: Annotated[str, typer.Option("--scenario", help="whose requests and outcomes")],
    engine: Annotated[str | None, typer.Option(
        help="rules | cedar | rego (default: from the file suffix)")] = None,
    expect: Annotated[Path | None, typer.Option(help="YAML of accepted flips")] = None,
    ci: Annotated[bool, typer.Option("--ci", help="exit 1 on a flip --expect does not accept")] = False,
    fmt: Annotated[str, typer.Option("--format", help="text | md | json")] = "text",
    outcomes: Annotated[bool, typer.Option(help="also run the scenario under both")] = True,
    replications: Annotated[int | None, typer.Option(min=1)] = None,
    set_: SetOpt = None,
) -> None:
    """What a policy edit changes: flipped decisions on the scenario's requests, by rule and
    permission, and paired differences in outcomes. Exit 1 with --ci on an unexpected flip."""
    from simharness.diff_policy import DiffInputError, diff_policy, to_json, to_text

    if fmt not in ("text", "md", "json"):
        _fail(f"--format {fmt!r}: choose text, md or json")
    overrides = list(set_ or ()) + ([f"replications={replications}"] if replications else [])
    try:
        result = diff_policy(old, new, scenario, engine, expect, overrides, outcomes)
    except ScenarioError as e:
        _fail(e)
    except DiffInputError as e:
        _fail(f"diff-policy: {e}")
    typer.echo(to_json(result) if fmt == "json" else to_text(result, markdown=fmt == "md"), nl=False)
    raise typer.Exit(1 if ci and result.unexpected else 0)


@app.command()
def budget(
    scenario: ScenarioArg,
    control: Annotated[str, typer.Option("--control", help="the control to size")],
    param: Annotated[str, typer.Option("--param", help="dotted path inside its params")],
    slo: Annotated[list[str], typer.Option("--slo", help="e.g. 'task_inflation<=0.05' (repeatable)")],
    lo: Annotated[str | None, typer.Option(help="lower end of the search")] = None,
    hi: Annotated[str | None, typer.Option(help="upper end of the search")] = None,
    replications: Annotated[int | None, typer.Option(min=1)] = None,
    set_: SetOpt = None,
) -> None:
    """Bisect simulations for the largest (or smallest) parameter value that meets the SLO."""
    from simharness.budget import format_budget, format_point, parse_slo, solve_budget

    probes = 0

    def progress(point) -> None:  # each probe and its verdict as it comes (runs take a while)
        nonlocal probes
        probes += 1
        typer.echo(format_point(probes, param, point, parse_slo(slo[0]).metric), err=True)

    try:
        result = solve_budget(scenario, control, param, slo[0], lo=lo, hi=hi,
                              replications=replications, overrides=tuple(set_ or ()),
                              also=tuple(slo[1:]), progress=progress)
    except ScenarioError as e:
        _fail(e)
    except ValueError as e:
        _fail(f"budget: {e}")
    typer.echo(format_budget(result))


@app.command()
def bound(
    scenarios: Annotated[list[str], typer.Argument(help="scenarios with misuse.cases (e.g. agentdojo_banking)")],
    controls: ControlsOpt = None,
    per_injection: Annotated[bool, typer.Option("--per-injection", help="also a table per injected task")] = False,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="write the markdown section to this file")] = None,
) -> None:
    """Each control's structural bound on scripted injection cases: prevention and utility."""
    from simharness.injection_bound import bound as compute
    from simharness.injection_bound import markdown
    from simharness.loader import load_scenario

    wanted = _controls(controls)
    results = []
    for name in scenarios:
        spec = load_scenario(name, controls=wanted)
        if not spec.misuse.cases:
            _fail(f"{name}: no misuse.cases to bound (see scenarios/agentdojo_*.yaml)")
        typer.echo(f"bounding {spec.name}: {len(spec.controls)} controls", err=True)
        results.append((spec, compute(spec)))
    text = markdown(results, per_injection)
    if out is None:
        typer.echo(text)
        return
    from simharness.results import atomic_write_text
    atomic_write_text(out, text)
    typer.echo(f"wrote {out}")


import_app = typer.Typer(no_args_is_help=True, help="benchmark suites as scenarios; agent traces",
                         context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(import_app, name="import")


@import_app.command("agentdojo")
def import_agentdojo(
    suite: Annotated[list[str] | None, typer.Option("--suite", help="workspace | travel | banking | slack (repeatable; default all)")] = None,
    version: Annotated[str, typer.Option("--version", help="AgentDojo benchmark version")] = "v1.2",
    out: Annotated[Path, typer.Option("-o", "--out", help="output folder")] = Path("."),
) -> None:
    """AgentDojo's task suites as scenarios (agentdojo_<suite>.yaml), printing what was inferred."""
    from simharness.importers.agentdojo import ImportInputError, MissingExtraError, summary, write

    try:
        written = write(suite, version, out)
    except (MissingExtraError, ImportInputError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    for imp, path in written:
        typer.echo(summary(imp))
        typer.echo(f"  wrote {path}")


@import_app.command("traces")
def import_traces(
    files: Annotated[list[Path], typer.Argument(help="OTLP JSON files (GenAI or OpenInference spans)")],
    out: Annotated[Path, typer.Option("-o", "--out", help="the calls file to write (JSONL)")] = Path("calls.jsonl"),
    mapping: Annotated[Path | None, typer.Option("--mapping", help="YAML: tools: {name: {action, resource}}")] = None,
) -> None:
    """Agent traces (OpenTelemetry GenAI or OpenInference spans, as OTLP JSON) as one JSONL
    of tasks and tool calls, for `replay` and `calibrate`."""
    from simharness.traces.calls import import_traces as run_import
    from simharness.traces.otlp import TraceInputError

    _writable_file(out, "-o")
    try:
        calls, notes = run_import(files, out, mapping)
    except TraceInputError as e:
        _fail(e)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    archetypes = sorted({t.archetype for t in calls.tasks})
    typer.echo(f"{len(calls.calls)} tool calls in {len(calls.tasks)} tasks of "
               f"{len({t.agent for t in calls.tasks})} agents ({', '.join(archetypes)}); "
               f"wrote {out}")


TraceOpt = Annotated[Path, typer.Option("--trace", help="a calls file from `import traces`")]


def _writable_file(path: Path | None, option: str) -> None:
    """Exit 2 before any work if `path` cannot be written as a file."""
    if path is None:
        return
    if path.is_dir():
        _fail(f"{option} {path}: is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK):
        _fail(f"{option} {path}: cannot write in {parent}")


@app.command()
def replay(
    scenario: ScenarioArg,
    trace: TraceOpt,
    controls: ControlsOpt = None,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="write every metric per control as CSV")] = None,
    otel: OtelOpt = None,
) -> None:
    """A recorded trace judged under each control: decisions changed, latency added, what the
    agents would then have done. The scenario gives resources, roles, controls and behaviour."""
    from simharness import loader
    from simharness.traces import export
    from simharness.traces import replay as replaying
    from simharness.traces.calls import read_calls
    from simharness.traces.otlp import TraceInputError

    _writable_file(out, "-o")
    if otel is not None and otel.exists() and not otel.is_dir():
        _fail(f"--otel {otel}: is a file; give a folder for the OTLP files")
    try:
        spec = loader.load_scenario(scenario, controls=_controls(controls))
        calls = read_calls(trace)
        results = replaying.replay(spec, calls)
    except ScenarioError as e:
        _fail(e)
    except TraceInputError as e:
        _fail(e)
    if spec.scope_rule().source == "plan":
        typer.echo(f"notice: {spec.name} declares each task's own calls as its scope "
                   "(declared_scope: plan), so per-task controls cannot deny a traced call by "
                   "construction; set declared_scope to predicted or role (docs/traces.md)",
                   err=True)
    typer.echo(replaying.format_rows([r.row for r in results]))
    if out is not None:
        import pandas as pd

        from simharness.results import atomic_write_text
        atomic_write_text(out, pd.DataFrame([r.row for r in results]).to_csv(index=False))
        typer.echo(f"wrote {out}")
    if otel is not None:
        for r in results:
            export.write_run(Path(otel) / f"replay-{r.control}.otlp.jsonl", r.log, r.parents,
                             spec.name, r.control, 0)
        typer.echo(f"wrote {len(results)} OTLP files to {otel}")


@app.command()
def calibrate(
    calls_file: Annotated[Path, typer.Argument(help="a calls file from `import traces`")],
    out: Annotated[Path, typer.Option("-o", "--out", help="the scenario YAML to write")] = Path("calibrated.yaml"),
    like: Annotated[str | None, typer.Option("--like", help="take tools, resources, weights, roles and controls from this scenario")] = None,
    name: Annotated[str | None, typer.Option("--name", help="scenario name (default: the file's stem)")] = None,
) -> None:
    """Fit a scenario to a trace: archetypes, task mix and plans, rates, think and step time
    (the goodness of fit of each is printed)."""
    import yaml

    from simharness import loader
    from simharness.traces import calibrate as fitting
    from simharness.traces.calls import read_calls
    from simharness.traces.otlp import TraceInputError

    _writable_file(out, "-o")
    try:
        calls = read_calls(calls_file)
        base = loader.load_scenario(like) if like is not None else None
    except (ScenarioError, TraceInputError) as e:
        _fail(e)
    scenario, fits, notes = fitting.calibrate(calls, name or out.stem, base)
    text = (f"# Calibrated by `simharness calibrate {calls_file}` from "
            f"{len(calls.calls)} calls.\n"
            + "".join(f"# {line}\n" for line in fitting.format_fits(fits).splitlines())
            + yaml.safe_dump(scenario, sort_keys=False, width=100))
    from simharness.results import atomic_path

    with atomic_path(out) as tmp:  # written only if it loads
        Path(tmp).write_text(text, encoding="utf-8")
        loader.load_scenario(tmp)
    typer.echo(fitting.format_fits(fits))
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"wrote {out}")


def main() -> None:
    """Console entry point: exit 2 on bad input, 1 on internal errors."""
    try:
        app()
    except ScenarioError as e:
        typer.echo(str(e), err=True)
        sys.exit(2)
    except FileNotFoundError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted: finished runs are saved; run again to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
