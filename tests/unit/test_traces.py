"""Traces in and out (issue 18): import of SDK-written OTLP, replay, calibration, OTLP export.

Test traces come from the OpenTelemetry SDK around a scripted agent (otel_agent.py); the
expected calls are written down from the script, not from the importer."""

from __future__ import annotations

import collections
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from simharness.cli import app
from simharness.controls.base import World, make
from simharness.engine import A, T, simulate
from simharness.loader import load_scenario
from simharness.traces import calibrate as fitting
from simharness.traces import export
from simharness.traces import replay as replaying
from simharness.traces.calls import Mapping, calls_from_spans, read_calls, write_calls
from simharness.traces.otlp import TraceInputError, read_spans
from simharness.workload import build_workload

agent = pytest.importorskip("tests.unit.otel_agent")

# The script's calls in time order: (time, end, agent, tool, action, outcome), by hand.
EXPECTED = [
    (1.0, 1.5, "support-0", "get_ticket", "read", "ok"),
    (1.25, 1.75, "support-1", "get_ticket", "read", "ok"),
    (2.0, 2.5, "support-1", "lookup_order", "write", "error"),
    (3.0, 4.25, "researcher-0", "search_wiki", "read", "ok"),
    (5.0, 6.0, "support-1", "update_ticket", "write", "ok"),
    (7.0, 7.5, "support-0", "send_reply", "send", "ok"),
]


def _import(path, mapping=None):
    return calls_from_spans(read_spans([path]), mapping)


@pytest.mark.parametrize("convention", ["genai", "openinference"])
@pytest.mark.parametrize("encoding", ["otlp", "otlp_lines", "console"])
def test_sdk_traces_import_to_the_scripted_calls(tmp_path, convention, encoding):
    path = tmp_path / "trace.json"
    if encoding == "console":
        agent.write_console(path, convention)
    else:
        agent.write_otlp(path, convention, lines=3 if encoding == "otlp_lines" else 1)
    calls, notes = _import(path)
    got = [(c.time, c.end, c.agent if convention == "genai" else c.archetype, c.tool, c.action,
            c.outcome) for c in calls.calls]
    want = EXPECTED if convention == "genai" else [
        (t, e, a.split("-")[0], tool, act, out) for t, e, a, tool, act, out in EXPECTED]
    assert got == want
    assert calls.t0 == agent.T0 / 1e9
    # Tasks: three agent spans, the researcher's delegated by support-0's.
    by_id = {t.task: t for t in calls.tasks}
    research = next(t for t in calls.tasks if t.archetype == "researcher")
    assert (research.start, research.end) == (2.0, 6.0)
    parent = by_id[research.parent_task]
    assert parent.archetype == "support" and (parent.start, parent.end) == (0.0, 9.0)
    assert sum(t.parent_task is None for t in calls.tasks) == 2
    # Arguments come through as values, not text.
    first = calls.calls[0]
    assert first.arguments == {"ticket_id": 7}
    # Tools whose action is only the default are listed, never dropped silently.
    assert [n.split("'")[1] for n in notes] == ["lookup_order", "update_ticket"]


def test_a_mapping_file_overrides_inference(tmp_path):
    path = agent.write_otlp(tmp_path / "t.json")
    m = tmp_path / "map.yaml"
    m.write_text("tools:\n  lookup_order: {action: read, resource: orders}\n"
                 "  send_reply: {resource: outbound_mail}\n")
    calls, notes = _import(path, Mapping.load(m))
    by_tool = {c.tool: (c.action, c.resource) for c in calls.calls}
    assert by_tool["lookup_order"] == ("read", "orders")
    assert by_tool["send_reply"] == ("send", "outbound_mail")  # action still inferred
    assert by_tool["get_ticket"] == ("read", "get_ticket")
    assert [n.split("'")[1] for n in notes] == ["update_ticket"]


@pytest.mark.parametrize("content, expect", [
    ("{not json", ":1: not JSON"),
    ('{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "ab", '
     '"startTimeUnixNano": "1"}]}]}]}', "span ab: traceId/spanId"),
    ('{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "' + "1" * 32 + '", "spanId": "'
     + "2" * 16 + '", "startTimeUnixNano": "5", "endTimeUnixNano": "4"}]}]}]}',
     "span 2222222222222222: ends before it starts"),
    ('{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "' + "1" * 32 + '", "spanId": "'
     + "3" * 16 + '", "startTimeUnixNano": "5", "endTimeUnixNano": "6", "attributes": [{"key": '
     '"gen_ai.operation.name", "value": {"stringValue": "execute_tool"}}]}]}]}]}',
     "span 3333333333333333: a tool span without gen_ai.tool.name"),
    ('[1, 2]', "neither OTLP JSON"),
])
def test_malformed_traces_name_file_line_and_span(tmp_path, content, expect):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(TraceInputError) as e:
        _import(path)
    assert str(path) in str(e.value) and expect in str(e.value)


def test_cli_import_bad_input_exits_2_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = tmp_path / "calls.jsonl"
    r = CliRunner().invoke(app, ["import", "traces", str(bad), "-o", str(out)])
    assert r.exit_code == 2 and "not JSON" in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_calls_file_round_trips_and_rejects_damage(tmp_path):
    calls, _ = _import(agent.write_otlp(tmp_path / "t.json"))
    path = write_calls(tmp_path / "calls.jsonl", calls)
    again = read_calls(path)
    assert again.calls == calls.calls and again.tasks == calls.tasks and again.t0 == calls.t0
    lines = path.read_text().splitlines()
    rec = json.loads(lines[-1])
    rec["end"] = rec["time"] - 1
    lines[-1] = json.dumps(rec)
    lines.insert(2, '{"record": "call", "time": 1}')
    path.write_text("\n".join(lines))
    with pytest.raises(TraceInputError) as e:
        read_calls(path)
    text = str(e.value)
    assert f"{path}:3: missing" in text and f"{path}:{len(lines)}: time and end" in text
    (tmp_path / "x.jsonl").write_text('{"record": "call"}\n')
    with pytest.raises(TraceInputError, match="not a calls file"):
        read_calls(tmp_path / "x.jsonl")


# ---------------------------------------------------------------------------------- replay

SCENARIO = """
schema_version: 1
name: helpdesk
resources:
  - {name: get_ticket, sensitivity: confidential, destination: tickets.example}
  - {name: lookup_order, sensitivity: internal, destination: orders.example}
  - {name: update_ticket, sensitivity: confidential, destination: tickets.example}
  - {name: send_reply, sensitivity: public, destination: mail.example, external: true}
  - {name: search_wiki, sensitivity: internal, destination: wiki.example}
tools:
  - {name: get_ticket, actions: [read], resources: [get_ticket]}
  - {name: lookup_order, actions: [write], resources: [lookup_order]}
  - {name: update_ticket, actions: [write], resources: [update_ticket]}
  - {name: send_reply, actions: [send], resources: [send_reply]}
  - {name: search_wiki, actions: [read], resources: [search_wiki]}
agents:
  - name: support
    role: {get_ticket: [read], lookup_order: [write], update_ticket: [write], send_reply: [send]}
    task_rate: 1/h
    tasks: {triage: 1}
  - name: researcher
    role: {search_wiki: [read]}
    task_rate: 1/h
tasks:   # a replay takes its tasks from the trace; the scenario still names one
  triage: {steps: [{tool: get_ticket, action: read, resource: get_ticket}]}
controls:
  - none
  - {name: no_send, model: static_iam, params: {}}
"""


@pytest.fixture()
def helpdesk(tmp_path):
    path = tmp_path / "helpdesk.yaml"
    path.write_text(SCENARIO)
    calls, _ = _import(agent.write_otlp(tmp_path / "t.json"))
    return path, calls


def _traced(log):
    """(time, end) of every action: request to end of execution."""
    return sorted((a[A["time"]], a[A["time"]] + a[A["latency"]] + a[A["duration"]])
                  for a in log.actions)


def test_replay_under_none_is_the_trace(helpdesk):
    path, calls = helpdesk
    spec = load_scenario(path, controls=["none"])
    (res,) = replaying.replay(spec, calls)
    got = _traced(res.log)
    want = sorted((c.time, c.end) for c in calls.calls)
    assert np.allclose(got, want, rtol=0, atol=1e-9)
    assert res.row["decisions_changed"] == 0 and res.row["latency_added_s"] == 0
    # Tasks start when their agent span started; the delegated one when support-0 handed off.
    starts = sorted((r[T["depth"]], r[T["start"]]) for r in res.log.tasks)
    assert starts == [(0, 0.0), (0, 0.5), (1, 2.0)]


def test_replay_of_an_exported_run_under_none_is_that_run(tmp_path):
    """A simulated run exported, imported and replayed under none: every call at its time."""
    spec, log, parents = _baseline_log(tmp_path)
    path = export.write_run(tmp_path / "run.otlp.jsonl", log, parents, spec.name, "x", 0)
    calls, _ = calls_from_spans(read_spans([path]))
    base = load_scenario("baseline", controls=["none"])
    (res,) = replaying.replay(base, calls)
    want = sorted((c.time, c.end) for c in calls.calls)
    assert np.allclose(_traced(res.log), want, rtol=0, atol=1e-9)
    assert res.row["actions"] == len(calls.calls)


def test_replay_denies_exactly_the_calls_outside_the_role(helpdesk, tmp_path):
    """static_iam with a role lacking send: exactly the traced sends are denied (oracle: the
    script has one send), and with on_deny abort the task fails there."""
    path, calls = helpdesk
    text = SCENARIO.replace(", send_reply: [send]}", "}")
    p2 = tmp_path / "nosend.yaml"
    p2.write_text(text)
    spec = load_scenario(p2, controls=["static_iam"])
    (res,) = replaying.replay(spec, calls)
    denied = [a for a in res.log.actions if not a[A["allowed"]]]
    assert [a[A["tool"]] for a in denied] == ["send_reply"]
    assert denied[0][A["time"]] == pytest.approx(7.0, abs=1e-3)  # plus the checks' latency
    assert res.row["decisions_changed"] == sum(1 for a in denied if a[A["source"]] == "plan") >= 1
    assert res.row["false_deny_rate"] > 0


def test_replay_latency_pushes_later_steps_back(helpdesk):
    """per_action_policy adds a decision latency to every call: each task's calls shift by the
    sum of the latencies before them (oracle computed from the logged latencies)."""
    path, calls = helpdesk
    spec = load_scenario(path, controls=["per_action_policy"])
    (res,) = replaying.replay(spec, calls)
    assert res.row["latency_added_s"] > 0
    by_task = collections.defaultdict(list)
    for a in res.log.actions:
        by_task[a[A["task"]]].append(a)
    # support-1's task has no delegation: its k-th call starts at the traced time plus the
    # latencies of the calls before it.
    trace = [c for c in calls.calls if c.agent == "support-1"]
    sim = sorted(by_task[next(r[T["task"]] for r in res.log.tasks
                              if r[T["start"]] == 0.5)], key=lambda a: a[A["time"]])
    shift = 0.0
    for c, a in zip(trace, sim, strict=True):
        assert math.isclose(a[A["time"]], c.time + shift, abs_tol=1e-9)
        shift += a[A["latency"]]


def test_replay_refuses_a_scenario_that_cannot_express_the_trace(helpdesk, tmp_path):
    path, calls = helpdesk
    p2 = tmp_path / "x.yaml"
    p2.write_text(SCENARIO.replace("name: researcher", "name: research_bot"))
    spec = load_scenario(p2)
    with pytest.raises(TraceInputError, match="'researcher' is not an agent.*did you mean"):
        replaying.replay(spec, calls)


# ---------------------------------------------------------------------------------- export

def _baseline_log(tmp_path, misuse_rate=0.0):
    spec = load_scenario("baseline", overrides=[f"misuse.rate={misuse_rate}", "horizon=2h"],
                         controls=["per_action_policy"])
    w = build_workload(spec, 0)
    parents = export.delegation_parents(w)
    log = simulate(w, make("per_action_policy", "per_action_policy", {}, World(spec)),
                   keep_plans=False)
    return spec, log, parents


def test_export_has_a_span_per_task_action_and_decision_and_reads_back(tmp_path):
    spec, log, parents = _baseline_log(tmp_path)
    path = export.write_run(tmp_path / "run.otlp.jsonl", log, parents, spec.name, "pap", 0)
    spans = read_spans([path])
    ops = collections.Counter(s.attributes["gen_ai.operation.name"] for s in spans)
    assert ops == {"invoke_agent": len(log.tasks), "execute_tool": len(log.actions),
                   "apply_guardrail": len(log.actions)}
    decisions = collections.Counter(s.attributes["gen_ai.security.decision.type"]
                                    for s in spans if "gen_ai.security.decision.type" in s.attributes)
    assert decisions["deny"] == sum(1 for a in log.actions if not a[A["allowed"]])
    assert {s.attributes["gen_ai.security.policy.id"] for s in spans
            if "gen_ai.security.policy.id" in s.attributes} == {"pap"}
    calls, notes = calls_from_spans(spans)
    assert notes == []  # simharness.action/resource make a mapping unnecessary
    want = sorted((a[A["time"]], a[A["tool"]], a[A["action"]], a[A["resource"]])
                  for a in log.actions)
    got = sorted((c.time + (calls.t0 - export.EPOCH_NS / 1e9), c.tool, c.action, c.resource)
                 for c in calls.calls)
    assert [g[1:] for g in got] == [w[1:] for w in want]
    assert np.allclose([g[0] for g in got], [w[0] for w in want], atol=1e-6)
    # Delegated tasks that made calls come back as delegated (a task without calls is left out).
    acting = {a[A["task"]] for a in log.actions}
    ran = {r[T["task"]] for r in log.tasks}
    assert sum(t.parent_task is not None for t in calls.tasks) == len(
        [t for t in parents if t in ran and t in acting])


def test_export_is_deterministic(tmp_path):
    spec, log, parents = _baseline_log(tmp_path)
    a = export.write_run(tmp_path / "a.jsonl", log, parents, spec.name, "x", 0).read_bytes()
    spec, log, parents = _baseline_log(tmp_path)
    b = export.write_run(tmp_path / "b.jsonl", log, parents, spec.name, "x", 0).read_bytes()
    assert a == b


def test_cli_run_with_otel_writes_one_file_per_reported_run(tmp_path):
    r = CliRunner().invoke(app, ["run", "baseline", "--replications", "2", "--horizon", "1h",
                                 "--controls", "jit_per_task", "--quiet", "--out",
                                 str(tmp_path / "res"), "--otel", str(tmp_path / "otel")])
    assert r.exit_code == 0, r.output
    files = sorted(p.name for p in (tmp_path / "otel").iterdir())
    # the hidden `none` reference run is not exported
    assert [f.split("-")[0:2] for f in files] == [["jit_per_task", "r0"], ["jit_per_task", "r1"]]


# ---------------------------------------------------------------------------------- calibrate

@pytest.mark.parametrize("family", ["exponential", "lognormal", "bimodal"])
def test_fit_picks_the_family_that_generated_the_data(family):
    rng = np.random.default_rng(1)
    if family == "exponential":
        x = rng.exponential(2.0, 4000)
    elif family == "lognormal":
        x = rng.lognormal(np.log(0.3), 1.0, 4000)
    else:
        x = np.concatenate([rng.normal(1.0, 0.05, 2000), rng.normal(5.0, 0.05, 2000)])
    fit = fitting.fit_duration("think", x.tolist())
    assert fit.chosen == {"bimodal": "empirical"}.get(family, family)
    if family == "exponential":
        assert fit.dist["mean"] == pytest.approx(2.0, rel=0.05)
    if family == "lognormal":
        assert fit.dist["p50"] == pytest.approx(0.3, rel=0.05)
        assert fit.dist["p99"] == pytest.approx(0.3 * math.exp(2.326), rel=0.1)


def test_predicted_scope_is_a_leave_one_out_majority():
    """Six tasks with one first call: five use {A, B}, one {A, C}; the role is {A, B, C, D}.
    By hand: a {A, B} task's predictor (4 x AB, 1 x AC) declares {A, B}: recall 1, extra 0;
    the {A, C} task's (5 x AB) declares {A, B}: recall 1/2, extra |{B}| / |{B, D}| = 1/2."""
    from simharness.traces.calls import Call, Calls, TaskRecord

    tasks, calls = [], []
    for i, perms in enumerate(["AB"] * 5 + ["AC"]):
        tasks.append(TaskRecord(f"t{i}", "a0", "a0", "bot", 10.0 * i, 10.0 * i + 5))
        for k, p in enumerate(perms):
            calls.append(Call(10.0 * i + k, 10.0 * i + k + 0.5, f"t{i}", "a0", "a0", "bot",
                              "tool", {"A": "read", "B": "write", "C": "send"}[p], "r"))
    calls.append(Call(100.0, 101.0, "t9", "a1", "a1", "bot", "tool", "delete", "r"))
    tasks.append(TaskRecord("t9", "a1", "a1", "bot", 99.0, 101.0))
    scenario, _, _ = fitting.calibrate(Calls(0.0, tasks, calls))
    # t9 (first call D) has no similar tasks: it is left out of the estimate
    assert scenario["declared_scope"] == {"source": "predicted",
                                          "recall": pytest.approx((5 + 0.5) / 6, abs=1e-5),
                                          "extra": pytest.approx(0.5 / 6, abs=1e-5)}


def _profile(log, horizon):
    acts = [a for a in log.actions if a[A["misuse_id"]] < 0]
    tops = [r for r in log.tasks if r[T["depth"]] == 0]
    mix = collections.Counter(a[A["action"]] for a in acts)
    return {"tasks_per_h": len(tops) / horizon * 3600,
            "steps_per_task": len(acts) / len(log.tasks),
            **{f"share_{k}": v / len(acts) for k, v in mix.items()},
            "step_median": float(np.median([a[A["duration"]] for a in acts]))}


def test_round_trip_baseline_export_import_calibrate_simulate(tmp_path):
    """Must-show: simulate baseline -> OTLP -> import -> calibrate -> simulate: task rate, steps
    per task, action mix and think/step medians within 5 % of the original."""
    spec = load_scenario("baseline", overrides=["misuse.rate=0"], controls=["none"])
    w = build_workload(spec, 0)
    parents = export.delegation_parents(w)
    log = simulate(w, make("none", "none", {}, World(spec)), keep_plans=False)
    path = export.write_run(tmp_path / "b.otlp.jsonl", log, parents, spec.name, "none", 0)
    calls, _ = calls_from_spans(read_spans([path]))
    scenario, fits, _ = fitting.calibrate(calls, "rt")
    import yaml

    (tmp_path / "rt.yaml").write_text(yaml.safe_dump(scenario, sort_keys=False))
    fitted = load_scenario(tmp_path / "rt.yaml", controls=["none"])
    orig = _profile(log, spec.horizon)
    again = [_profile(simulate(build_workload(fitted, r),
                               make("none", "none", {}, World(fitted)), keep_plans=False),
                      fitted.horizon) for r in range(3)]
    for key, value in orig.items():
        mean = np.mean([g.get(key, 0.0) for g in again])
        assert mean == pytest.approx(value, rel=0.05), key
    # think: the original is exponential with mean 2 s (median 2 ln 2)
    think = next(f for f in fits if f.name == "think")
    assert think.chosen == "exponential"
    assert think.median == pytest.approx(2 * math.log(2), rel=0.05)


def test_cli_import_replay_calibrate(tmp_path, helpdesk):
    path, _ = helpdesk
    trace = agent.write_otlp(tmp_path / "t.json")
    runner = CliRunner()
    r = runner.invoke(app, ["import", "traces", str(trace), "-o", str(tmp_path / "c.jsonl")])
    assert r.exit_code == 0 and "6 tool calls in 3 tasks of 3 agents" in r.output
    r = runner.invoke(app, ["replay", str(path), "--trace", str(tmp_path / "c.jsonl"),
                            "-o", str(tmp_path / "r.csv"), "--otel", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[1].split()[:3] == ["none", "6", "0"]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "replay-no_send.otlp.jsonl", "replay-none.otlp.jsonl"]
    r = runner.invoke(app, ["calibrate", str(tmp_path / "c.jsonl"), "-o", str(tmp_path / "s.yaml")])
    assert r.exit_code == 0, r.output
    spec = load_scenario(tmp_path / "s.yaml")
    assert {a.name: a.count for a in spec.agents} == {"researcher": 1, "support": 2}
    r = runner.invoke(app, ["replay", str(path), "--trace", str(tmp_path / "missing.jsonl")])
    assert r.exit_code == 2 and "cannot read" in r.output


@pytest.mark.parametrize("args, message", [
    (["calibrate", "{calls}", "-o", "{tmp}"], "is a folder"),
    (["replay", "{scenario}", "--trace", "{calls}", "--otel", "{calls}"], "is a file"),
    (["replay", "{scenario}", "--trace", "{calls}", "--controls", "nope"], "did you mean"),
    (["import", "traces", "{trace}", "-o", "{tmp}"], "is a folder"),
    (["calibrate", "{trace}"], "not a calls file"),
])
def test_cli_bad_input_exits_2_with_one_message(tmp_path, helpdesk, args, message):
    path, calls = helpdesk
    values = {"calls": str(write_calls(tmp_path / "c.jsonl", calls)), "tmp": str(tmp_path),
              "scenario": str(path), "trace": str(agent.write_otlp(tmp_path / "t.json"))}
    r = CliRunner().invoke(app, [a.format(**values) for a in args])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
