"""Issue 21: resume survives damaged run files, output folders are checked before running,
work is bounded, processes end cleanly, reports and CSVs escape what they carry, and every
bad input is an exit 2 with one line. One test (at least) per numbered item."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import simharness
from simharness.cli import app
from simharness.loader import dump_scenario
from tests.conftest import make_spec

TABLES = ("summary.csv", "aggregate.csv", "misuse.csv", "timeline.csv", "latency.csv")


def _cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def mini_file(tmp_path: Path) -> Path:
    path = tmp_path / "mini.yaml"
    path.write_text(dump_scenario(make_spec(horizon="20m", replications=3)))
    return path


# --------------------------------------------------------------------------- item 2: resume

DAMAGE = {
    "truncated": lambda text: text[: len(text) // 2],
    "empty": lambda text: "",
    "binary": lambda text: "\x00\xff\x13garbage",
    "keyless": lambda text: json.dumps({"row": {}}),
    "edited": lambda text: text.replace('"replication":', '"replication":1', 1),
}


def test_damaged_run_files_are_moved_aside_and_only_they_are_recomputed(tmp_path, mini_file,
                                                                         capsys):
    out = tmp_path / "out"
    simharness.run(mini_file, out=out)
    reference = {name: (out / name).read_bytes() for name in TABLES}
    files = sorted((out / "runs").glob("*.json"))
    assert len(files) >= len(DAMAGE)
    for path, damage in zip(files, DAMAGE.values(), strict=False):
        path.write_text(damage(path.read_text()))

    simharness.run(mini_file, out=out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["runs_computed"] == len(DAMAGE)
    assert manifest["runs_reused"] == len(files) - len(DAMAGE)
    assert len(list((out / "runs").glob("*.json.corrupt"))) == len(DAMAGE)
    assert "moved aside" in capsys.readouterr().err
    for name in TABLES:
        assert (out / name).read_bytes() == reference[name], name


def test_report_survives_a_garbage_manifest(tmp_path, mini_file):
    out = tmp_path / "out"
    simharness.run(mini_file, out=out)
    (out / "manifest.json").write_bytes(b"\x00{not json")
    r = _cli("report", out)
    assert r.exit_code == 0, r.output
    assert (out / "report.md").is_file()
    (out / "manifest.json").write_text("[1, 2]")
    assert simharness.load_results(out).manifest == {}


# --------------------------------------------------------------------------- item 3: bounded work

def _write(tmp_path: Path, name: str = "s.yaml", **changes) -> Path:
    path = tmp_path / name
    path.write_text(dump_scenario(make_spec(**changes)))
    return path


@pytest.mark.parametrize("horizon", ["1000000h", "1e300h"])
def test_a_huge_horizon_is_refused_before_running(tmp_path, mini_file, horizon):
    r = _cli("run", mini_file, "--horizon", horizon, "--out", tmp_path / "out")
    assert r.exit_code == 2, r.output
    assert "actions" in r.output and "--max-actions" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()


def test_misuse_bursts_count_in_the_estimate(tmp_path):
    misuse = {"rate": 0.5, "kinds": {"credential_theft": 1},
              "params": {"theft_uses": 10**12}}
    path = _write(tmp_path, horizon="20m", misuse=misuse)
    r = _cli("run", path, "--out", tmp_path / "out")
    assert r.exit_code == 2 and "--max-actions" in r.output, r.output
    r = _cli("validate", path)
    assert r.exit_code == 2 and "--max-actions" in r.output, r.output


def test_delegation_fan_out_counts_in_the_estimate(tmp_path):
    from simharness.estimate import actions_per_run

    tasks = {f"t{i}": {"steps": [{"delegate": "billing", "task": f"t{i + 1}"}] * 40}
             for i in range(4)}
    tasks["t4"] = {"steps": [{"tool": "sql", "action": "read", "resource": "ledger"}]}
    agents = [{"name": "billing", "count": 1, "role": {"sql": ["read"]}, "task_rate": "1/h",
               "tasks": {"t0": 1}}]
    spec = make_spec(horizon="1h", tasks=tasks, agents=agents)
    assert actions_per_run(spec) == pytest.approx(40**4)
    r = _cli("run", _write(tmp_path, horizon="1h", tasks=tasks, agents=agents),
             "--out", tmp_path / "out")
    assert r.exit_code == 2 and "2,560,000" in r.output, r.output


def test_max_actions_raises_and_lowers_the_cap(tmp_path, mini_file):
    r = _cli("run", mini_file, "--max-actions", "10", "--out", tmp_path / "a", "-q")
    assert r.exit_code == 2 and "cap of 10" in r.output, r.output
    r = _cli("run", mini_file, "--horizon", "10000h", "--max-actions", "1e7", "--out",
             tmp_path / "b", "--controls", "none", "--replications", "1", "-q")
    assert r.exit_code == 0, r.output


def test_estimate_matches_a_run():
    from simharness.estimate import actions_per_run
    from simharness.sweeps import plan, run_one

    spec = make_spec(horizon="10h", replications=1)
    row = run_one(plan([({}, spec)], ["none"])[0])["row"]
    assert actions_per_run(spec) == pytest.approx(row["actions"], rel=0.25)


# --------------------------------------------------------------------------- item 4: output folder

def test_out_that_is_a_file_or_below_a_file_exits_2_before_simulating(tmp_path, mini_file):
    target = tmp_path / "a_file"
    target.write_text("mine")
    for out in (target, target / "sub"):
        r = _cli("run", mini_file, "--out", out)
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        assert str(out) in r.output
    assert target.read_text() == "mine"


def test_a_folder_of_other_files_is_refused(tmp_path, mini_file):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "summary.csv").write_text("my own data\n")
    r = _cli("run", mini_file, "--out", out)
    assert r.exit_code == 2 and "not a results folder" in r.output, r.output
    assert (out / "summary.csv").read_text() == "my own data\n"


def test_result_files_follow_the_umask(tmp_path, mini_file):
    import os

    old = os.umask(0o022)
    try:
        from simharness import results

        results._file_mode.cache_clear()
        simharness.run(mini_file, out=tmp_path / "out")
    finally:
        os.umask(old)
        results._file_mode.cache_clear()
    for path in [*(tmp_path / "out").glob("*.csv"), tmp_path / "out" / "manifest.json",
                 *(tmp_path / "out" / "runs").glob("*.json")]:
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_a_second_run_into_a_locked_folder_exits_2(tmp_path, mini_file):
    from simharness.results import claim_folder

    out = tmp_path / "out"
    with claim_folder(out, "mini"):
        r = _cli("run", mini_file, "--out", out)
    assert r.exit_code == 2 and "another simharness run" in r.output, r.output
    assert not (out / "runs").exists()
    assert _cli("run", mini_file, "--out", out, "-q").exit_code == 0  # released


def test_a_folder_of_another_scenario_is_refused(tmp_path, mini_file):
    out = tmp_path / "out"
    simharness.run(mini_file, out=out)
    other = tmp_path / "other.yaml"
    other.write_text(dump_scenario(make_spec(name="other", horizon="20m")))
    r = _cli("run", other, "--out", out)
    assert r.exit_code == 2 and "'mini'" in r.output and "'other'" in r.output, r.output


def test_stale_report_and_plots_are_removed_when_the_tables_change(tmp_path, mini_file):
    out = tmp_path / "out"
    simharness.run(mini_file, out=out)
    views = [out / "report.html", out / "report.md", out / "plots" / "tradeoff.png"]

    def draw() -> None:
        (out / "plots").mkdir(exist_ok=True)
        for v in views:
            v.write_text("view")

    draw()
    simharness.run(mini_file, out=out)  # same tables: the views still describe them
    assert all(v.exists() for v in views)
    simharness.run(mini_file, out=out, overrides=["replications=2"])
    assert not any(v.exists() for v in views) and not (out / "plots").exists()


def test_manifest_records_every_controls_resolved_params(tmp_path, mini_file):
    out = tmp_path / "out"
    simharness.run(mini_file, out=out, controls=["per_action_policy"])
    resolved = json.loads((out / "manifest.json").read_text())["controls_resolved"]
    pdp = resolved["per_action_policy"]["params"]["pdp"]
    assert pdp["servers"] == 4 and pdp["fail_mode"] == "closed" and pdp["timeout"] == 0.2


# --------------------------------------------------------------------------- item 5: processes

def _workers_of(pid: int) -> list[int]:
    import subprocess

    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _default_sigint() -> None:
    """In the child: Ctrl-C raises KeyboardInterrupt even when the tests run in a background
    job (a non-interactive shell starts those with SIGINT ignored, which Python then keeps)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_pooled_run(tmp_path: Path):
    import subprocess
    import sys
    import time

    path = _write(tmp_path, "big.yaml", horizon="2000h", replications=4)
    # Output to a file, not a pipe: orphaned workers would hold a pipe open for ever.
    log = open(tmp_path / "stderr.txt", "w")  # noqa: SIM115 - closed when the process ends
    proc = subprocess.Popen([sys.executable, "-m", "simharness.cli", "run", str(path),
                             "--out", str(tmp_path / "out"), "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
                            preexec_fn=_default_sigint)
    log.close()
    deadline = time.monotonic() + 60
    while len(_workers_of(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = _workers_of(proc.pid)
    assert len(workers) >= 2, "the pool did not start"
    time.sleep(1.0)  # the workers are inside their first runs
    return proc, workers


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    import time

    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


@needs_proc
def test_ctrl_c_twice_stops_a_pooled_run_and_says_how_to_resume(tmp_path):
    import os
    import signal
    import subprocess

    proc, workers = _start_pooled_run(tmp_path)
    try:
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends to the whole group
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the interrupted run hangs")
    finally:
        left = _wait_gone(workers, 10)
        for p in left:
            os.kill(p, signal.SIGKILL)
    err = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err and "Traceback" not in err
    assert not left


@needs_proc
def test_workers_exit_when_the_parent_is_killed(tmp_path):
    import os
    import signal

    proc, workers = _start_pooled_run(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    left = _wait_gone(workers, 10)
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, "workers outlived their killed parent"


# --------------------------------------------------------------------------- item 7: escaping

def test_report_md_escapes_html_from_the_scenario(tmp_path):
    from simharness.report import render_markdown

    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    out = tmp_path / "out"
    simharness.run(make_spec(horizon="20m", replications=1, description=evil), out=out)
    md = render_markdown(out, simharness.load_results(out))
    assert "<script>" not in md and "<img" not in md
    assert "&lt;script&gt;" in md


# --------------------------------------------------------------------------- item 9: the second attack

def test_sweep_values_that_start_a_formula_are_escaped_in_every_csv(tmp_path):
    values = ["=HYPERLINK(\"http://x\")", "+1+1", "-2", "@SUM(A1)", "plain"]
    out = tmp_path / "out"
    simharness.sweep(make_spec(horizon="1h", replications=1, misuse={"rate": 0.5}),
                     {"description": values, "agents.0.count": [1]}, controls=["static_iam"],
                     out=out)
    for name in TABLES:
        text = (out / name).read_text()
        for v in values[:4]:
            assert f",{v}," not in text and f"'{v}" in text.replace('""', '"'), (name, v)
    summary = (out / "summary.csv").read_text().splitlines()
    assert all(line.split(",")[-1] != "'1" for line in summary)  # numbers stay numbers
    loaded = simharness.load_results(out).summary
    assert list(loaded["description"]) == values and loaded["agents.0.count"].dtype.kind == "i"


@pytest.mark.parametrize("grid", ["description=@x", "misuse.rate=[1", "description=a: b: c",
                                  "description=`x"])
def test_bad_yaml_in_grid_exits_2_with_the_column(tmp_path, mini_file, grid):
    r = _cli("sweep", mini_file, "--grid", grid, "--out", tmp_path / "out")
    assert r.exit_code == 2, r.output
    assert "column" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def _with_samples(tmp_path: Path, samples: str) -> Path:
    return _write(tmp_path, "samples.yaml", horizon="20m",
                  timing={"step": {"dist": "empirical", "samples": samples}})


def test_samples_file_lines_are_never_echoed(tmp_path):
    (tmp_path / "leak.csv").write_text("seconds\n0.5\nAWS_SECRET=hunter2-abc\n")
    r = _cli("validate", _with_samples(tmp_path, "leak.csv"))
    assert r.exit_code == 2 and "leak.csv:3" in r.output, r.output
    assert "hunter2" not in r.output and "AWS_SECRET" not in r.output


@pytest.mark.parametrize("kind", ["fifo", "folder", "huge"])
def test_samples_must_be_a_small_regular_file(tmp_path, kind):
    import os
    import subprocess
    import sys

    target = tmp_path / "s.csv"
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
    else:
        with open(target, "wb") as f:
            f.truncate(64 * 1024 * 1024)  # sparse: costs no disk
    path = _with_samples(tmp_path, "s.csv")
    # A subprocess with a timeout: the FIFO used to block `validate` for ever.
    r = subprocess.run([sys.executable, "-m", "simharness.cli", "validate", str(path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert ("not a regular file" if kind != "huge" else "larger than") in r.stderr
    assert "Traceback" not in r.stderr


PROFILE_ERRORS = {
    "servers: -1": ("pdp: {servers: -1}", "params.pdp.servers"),
    "timeout: banana": ("pdp: {timeout: banana}", "params.pdp.timeout"),
    "unknown key": ("pdp: {bogus: 1}", "params.pdp.bogus"),
    "broken policy": ("policy: rules.yaml", "rules.0.when.action.in.0"),
}


@pytest.mark.parametrize("case", PROFILE_ERRORS)
def test_validate_checks_a_control_profile_as_a_run_does(tmp_path, case, monkeypatch):
    params, where = PROFILE_ERRORS[case]
    monkeypatch.chdir(tmp_path)  # the policy file is found from the working directory
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {id: a, effect: deny, when: {action: {in: [[read, write]]}}}\n")
    profile = tmp_path / "p.yaml"
    profile.write_text(f"model: per_action_policy\nparams:\n  {params}\n")
    r = _cli("validate", profile)
    assert r.exit_code == 2 and where in r.output and "ok" not in r.output, r.output
    assert "Traceback" not in r.output


RULE_TYPOS = {
    "in: [[a, b]]": ("{action: {in: [[read, write]]}}", "2:", "rules.0.when.action.in.0"),
    "gt: .inf": ("{rate: {key: identity, window: 10s, gt: .inf}}", "2:", "rules.0.when.rate.gt"),
    "approved as a string": ('{resource.approved: "false"}', "2:", "rules.0.when.resource.approved"),
    "bytes_out gt 1MB": ('{bytes_out: {gt: "1MB"}}', "2:", "rules.0.when.bytes_out.gt"),
}


@pytest.mark.parametrize("case", RULE_TYPOS)
def test_rules_typos_exit_2_with_their_position(tmp_path, case):
    when, line, where = RULE_TYPOS[case]
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"rules:\n  - {{id: a, effect: deny, when: {when}}}\n")
    r = _cli("validate", rules)
    assert r.exit_code == 2 and f"rules.yaml:{line}" in r.output and where in r.output, r.output
    # and a run that uses it says the same, without a traceback
    scenario = _write(tmp_path, horizon="20m", controls=[
        {"name": "p", "model": "per_action_policy", "params": {"policy": str(rules)}}])
    r = _cli("run", scenario, "--out", tmp_path / "out")
    assert r.exit_code == 2 and where in r.output and "Traceback" not in r.output, r.output


def test_rules_that_is_not_a_list_exits_2(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("policy_version: 1\nrules: 5\n")
    r = _cli("validate", rules)
    assert r.exit_code == 2 and "rules.yaml:2:1: rules: expected a list" in r.output, r.output


def test_shipped_policies_and_profiles_validate():
    from simharness.loader import data_dir

    root = data_dir("controls")
    files = [*root.glob("*.yaml"), root / "policies" / "agent_rules.yaml"]
    r = _cli("validate", *files)
    assert r.exit_code == 0, r.output


# --------------------------------------------------------------------------- item 6: parameter holes

@pytest.mark.parametrize("servers", [2.5, 0.5, True])
@pytest.mark.parametrize("where", ["per_action_policy.pdp.servers", "sse_only.servers",
                                   "jit_per_task.token_service.servers"])
def test_servers_must_be_a_whole_number_or_inf(tmp_path, mini_file, where, servers):
    control = where.split(".", 1)[0]
    r = _cli("run", mini_file, "--controls", control, "--set", f"controls.{where}={servers}",
             "--out", tmp_path / "out")
    assert r.exit_code == 2 and "servers" in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("servers, value", [(3, 3.0), (2.0, 2.0), (".inf", float("inf")),
                                            ("inf", float("inf"))])
def test_good_servers(servers, value):
    from simharness.units import parse_servers

    assert parse_servers(servers if servers != ".inf" else float("inf")) == value


def test_pdp_timeout_of_zero_is_an_error(tmp_path, mini_file):
    r = _cli("run", mini_file, "--controls", "per_action_policy", "--set",
             "controls.per_action_policy.pdp.timeout=0", "--out", tmp_path / "out")
    assert r.exit_code == 2 and "timeout" in r.output and "> 0" in r.output, r.output


@pytest.mark.parametrize("override", [
    "timing.think={dist: exponential, mean: .inf}", "timing.step=inf",
    "timing.step={dist: lognormal, p50: 1s, p99: .inf}",
    "timing.step={dist: uniform, low: 0, high: inf}", "timing.step={dist: empirical, samples: [1, .inf]}",
    "signals.risk.benign={dist: beta, a: .inf, b: 1}", "signals.risk.misuse={dist: beta, a: 1, b: .nan}",
    "weights.sensitivity.restricted=.inf", "weights.action.read=.nan", "agents.0.tasks.refund=.inf",
    "misuse.kinds.exfiltration=.inf",
])
def test_inf_and_nan_parameters_are_refused(tmp_path, mini_file, override):
    r = _cli("run", mini_file, "--set", override, "--out", tmp_path / "out")
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert not (tmp_path / "out").exists()
