"""Traces in and out (issue 18): import of SDK-written OTLP, replay, calibration, OTLP export.

Test traces come from the OpenTelemetry SDK around a scripted agent (otel_agent.py); the
expected calls are written down from the script, not from the importer."""

from __future__ import annotations

import collections
import json
import math
from pathlib import Path

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


@pytest.mark.parametrize("convention", ["genai", "openinference"])
def test_console_and_otlp_encodings_of_one_recording_read_the_same(tmp_path, convention):
    """The SDK's two writers of one recording (protobuf -> JSON, and the console exporter's
    own JSON) give the same spans: ids, parents, names, times to the microsecond the console
    keeps, status, attributes and resource."""
    agent.write_both(tmp_path / "o.json", tmp_path / "c.json", convention)

    def fields(s):
        return (s.trace_id, s.span_id, s.parent_id, s.name, s.start // 1000, s.end // 1000,
                s.error, s.attributes, s.resource)

    otlp, console = read_spans([tmp_path / "o.json"]), read_spans([tmp_path / "c.json"])
    assert len(otlp) == 9 and list(map(fields, otlp)) == list(map(fields, console))
    assert sum(s.error for s in otlp) == 1 and otlp[0].resource["service.name"] == "helpdesk"


@pytest.mark.parametrize("span, message", [
    ({"context": {"trace_id": "0x" + "1" * 32, "span_id": "0x12"}}, "span 0x12: context.trace_id"),
    ({"context": {"trace_id": "0x" + "1" * 32}}, "span ?: context.trace_id/span_id"),
    ({"context": {"span_id": "0x" + "2" * 16}}, "context.trace_id/span_id must be hex ids"),
    ({"context": {"trace_id": "0x" + "1" * 32, "span_id": "0x" + "2" * 16}},
     "span 0x2222222222222222: start_time/end_time must be ISO 8601 times"),
    ({"context": {"trace_id": "0x" + "1" * 32, "span_id": "0x" + "2" * 16},
      "start_time": "yesterday"}, "start_time/end_time must be ISO 8601"),
])
def test_malformed_console_spans(tmp_path, span, message):
    p = tmp_path / "c.json"
    p.write_text(json.dumps(span))
    with pytest.raises(TraceInputError) as e:
        read_spans([p])
    assert e.value.problems == [f"{p}:1: " + e.value.problems[0].split(":1: ", 1)[1]]
    assert message in e.value.problems[0]


def test_console_span_without_end_time_ends_at_its_start(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps([{"context": {"trace_id": "0x" + "1" * 32, "span_id": "0x" + "2" * 16},
                              "start_time": "2026-01-01T00:00:01Z", "status": {"status_code": "OK"}}]))
    (s,) = read_spans([p])
    assert s.start == s.end == 1_767_225_601_000_000_000 and not s.error and s.name == ""


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


def test_export_labels_injected_actions_with_their_kind(tmp_path):
    spec, log, parents = _baseline_log(tmp_path, misuse_rate=0.5)
    path = export.write_run(tmp_path / "m.jsonl", log, parents, spec.name, "x", 0)
    kinds = collections.Counter(s.attributes.get("simharness.misuse.kind") for s in read_spans([path])
                                if s.attributes.get("gen_ai.operation.name") == "execute_tool")
    want = collections.Counter(a[A["kind"]] if a[A["misuse_id"]] >= 0 else None
                               for a in log.actions)
    assert kinds == want and len(want) > 2


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
    lines = r.output.splitlines()
    # the helpdesk scenario declares the realised plan: the replay says what that decides
    assert lines[0].startswith("notice: helpdesk declares each task's own calls as its scope")
    assert lines[2].split()[:3] == ["none", "6", "0"]
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


HEADER = '{"format": "simharness-calls", "version": 1, "t0": 5.5}'
TASK = {"record": "task", "task": "t1", "agent": "a", "identity": "a", "archetype": "bot",
        "start": 0.0, "end": 3.0}
CALL = {"record": "call", "time": 1.0, "end": 2.0, "task": "t1", "agent": "a", "identity": "a",
        "archetype": "bot", "tool": "crm", "action": "read", "resource": "crm"}


def _calls_file(tmp_path, *records, header=HEADER):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join([header, *(r if isinstance(r, str) else json.dumps(r)
                                         for r in records)]) + "\n")
    return path


def test_calls_file_minimal_records_take_defaults_and_skip_blank_lines(tmp_path):
    path = _calls_file(tmp_path, TASK, "", "   ", CALL, {**CALL, "time": 2.5, "end": 2.5})
    calls = read_calls(path)
    assert calls.t0 == 5.5 and len(calls.tasks) == 1 and len(calls.calls) == 2
    c = calls.calls[0]
    assert (c.arguments, c.call_id, c.parent_call, c.outcome) == ({}, "", None, "ok")
    assert calls.tasks[0].parent_task is None and calls.tasks[0].name == ""


@pytest.mark.parametrize("record, message", [
    ("{oops", ":3: not JSON ("),
    ({"record": "span"}, ':3: "record" must be "task" or "call"'),
    ([1, 2], ':3: "record" must be "task" or "call"'),
    ({k: v for k, v in CALL.items() if k != "tool"}, ":3: missing tool"),
    ({**CALL, "colour": 1}, ":3: unknown colour"),
    ({k: v for k, v in {**CALL, "x": 1}.items() if k != "end"}, ":3: missing end; unknown x"),
    ({**CALL, "end": 0.5}, ":3: time and end must be numbers, end >= time"),
    ({**CALL, "time": "1"}, ":3: time and end must be numbers, end >= time"),
    ({**CALL, "time": float("nan")}, ":3: time and end must be numbers"),
    ({**TASK, "end": -1}, ":3: start and end must be numbers, end >= start"),
    ({**CALL, "tool": ""}, ":3: task, agent, identity, archetype, tool, action, resource must"),
    ({**TASK, "agent": 7}, ":3: task, agent, identity, archetype must be non-empty text"),
    ({**CALL, "task": "t9"}, ": call  names task 't9', which has no task record"),
    ({**TASK, "task": "t2", "parent_task": "t7"},
     ": task t2 names parent task 't7', which has no record"),
])
def test_calls_file_problems_name_the_line(tmp_path, record, message):
    path = _calls_file(tmp_path, TASK, record)
    with pytest.raises(TraceInputError) as e:
        read_calls(path)
    assert e.value.problems == [p for p in e.value.problems if p.startswith(str(path))]
    assert any(message in p for p in e.value.problems), e.value.problems


def test_calls_file_reports_every_problem_in_one_pass(tmp_path):
    path = _calls_file(tmp_path, TASK, "{oops", {**CALL, "end": 0}, {"record": "x"})
    with pytest.raises(TraceInputError) as e:
        read_calls(path)
    assert [p.split(":")[1] for p in e.value.problems] == ["3", "4", "5"]


@pytest.mark.parametrize("header, message", [
    ("", "not a calls file"),
    ("[]", "not a calls file"),
    ('{"format": "other"}', "not a calls file"),
    ('{"format": "simharness-calls", "version": 2}',
     ":1: version 2; this simharness reads version 1"),
])
def test_calls_file_header_is_checked(tmp_path, header, message):
    path = _calls_file(tmp_path, header=header)
    if not header:
        path.write_text("")
    with pytest.raises(TraceInputError) as e:
        read_calls(path)
    assert len(e.value.problems) == 1 and message in e.value.problems[0]


@pytest.mark.parametrize("text, message", [
    ("tools: [a, b]\n", "expected `tools: {name: {action: ..., resource: ...}}`"),
    ("- 1\n", "expected `tools:"),
    ("", "expected `tools:"),
    ("tools:\n  t: {verb: read}\n", "tools.t: give `action` and/or `resource` only"),
    ("tools:\n  t: read\n", "tools.t: give `action` and/or `resource` only"),
    ("tools:\n  t: {action: ''}\n", "tools.t: action and resource are names (text)"),
    ("tools:\n  t: {resource: 3}\n", "tools.t: action and resource are names (text)"),
    ("tools: {t: [\n", "cannot read the mapping"),
])
def test_bad_mapping_files_say_what_is_wrong(tmp_path, text, message):
    m = tmp_path / "map.yaml"
    m.write_text(text)
    with pytest.raises(TraceInputError) as e:
        Mapping.load(m)
    assert e.value.problems[0].startswith(f"{m}: ") and message in e.value.problems[0]


def test_mapping_resolve_rules():
    m = Mapping({"a_tool": {"action": "delete"}, "get_x": {"resource": "xs"},
                 "both": {"action": "send", "resource": "mail"}})
    assert m.resolve("a_tool") == ("delete", "a_tool", True)
    assert m.resolve("get_x") == ("read", "xs", True)
    assert m.resolve("both") == ("send", "mail", True)
    assert m.resolve("frobnicate") == ("write", "frobnicate", False)
    assert m.resolve("Send_Mail") == ("send", "Send_Mail", True)  # the prefix is case-blind
    assert Mapping.load(None).tools == {}


def test_replay_table_and_fit_report_formats():
    row = {"control": "jit", "actions": 12, "decisions_changed": 3, "false_deny_rate": 0.25,
           "tasks_failed": 1, "latency_added_p50_ms": 1.5, "latency_added_p99_ms": 9.25,
           "task_time_added_mean_s": 0.125, "exposure": 12345.0}
    wide = {**row, "control": "per_action_policy", "actions": 123456}
    lines = replaying.format_rows([row, wide]).splitlines()
    # first column left-aligned, the others right-aligned, each as wide as its widest cell
    assert lines[:3] == [
        "control            actions  denied*  false deny  tasks failed  p50 ms  p99 ms  "
        "task +s   exposure",
        "jit                     12        3       25.0%             1    1.50    9.25    "
        "0.125  1.234e+04",
        "per_action_policy   123456        3       25.0%             1    1.50    9.25    "
        "0.125  1.234e+04"]
    assert lines[3] == ("* traced calls denied (each one succeeded in the trace); p50/p99: "
                        "decision latency per call; task +s: mean time added to a completed task")
    assert len(lines) == 4 and max(map(len, lines[:3])) < 100
    head, only = replaying.format_rows([{"control": "x"}]).splitlines()[:2]
    assert only.rstrip() == "x" and len(only) == len(head)  # missing metrics: blank cells
    fits = [fitting.Fit("think", 10, "exponential", {"exponential": 0.01, "lognormal": 0.2},
                        {}, 1.5)]
    assert fitting.format_fits(fits) == ("think: 10 values, median 1.5 s; exponential KS 0.010, "
                                         "lognormal KS 0.200; using exponential")
    assert fitting.format_fits([fitting.fit_duration("step", [])]) == (
        "step: 0 values, median 0 s; no fit; using constant")


def test_declared_arguments_are_the_values_the_calls_used():
    from simharness.actions import Action, Args, Delegation

    steps = [Action(("t", "read", "r"), 0, 0, 0, 0, Args({"id": 7, "q": "x", "obj": {"a": 1}})),
             Action(("t", "read", "r"), 0, 0, 0, 0, None),
             Delegation(1.0, None),
             Action(("t", "send", "r"), 0, 0, 0, 0, Args({"id": 8, "flag": True}))]
    assert replaying._declared_args(steps) == {"id": frozenset({7, 8}), "q": frozenset({"x"}),
                                               "flag": frozenset({True})}
    assert replaying._declared_args(steps[1:3]) == {}


@pytest.mark.parametrize("text, ns", [
    ("2026-01-01T00:00:00.000001Z", 1_767_225_600_000_001_000),
    ("2026-01-01T01:00:00+01:00", 1_767_225_600_000_000_000),
    ("2026-01-01T00:00:00", 1_767_225_600_000_000_000),  # naive: UTC, as the SDK writes
])
def test_console_times_are_whole_nanoseconds(text, ns):
    from simharness.traces.otlp import _iso

    assert _iso(text) == ns


def test_written_calls_file_is_sorted_json_lines(tmp_path):
    calls, _ = _import(agent.write_otlp(tmp_path / "t.json"))
    text = write_calls(tmp_path / "c.jsonl", calls).read_text()
    lines = text.splitlines()
    assert json.loads(lines[0]) == {"format": "simharness-calls", "version": 1, "t0": calls.t0}
    records = [json.loads(x) for x in lines[1:]]
    assert [r["record"] for r in records] == ["task"] * 3 + ["call"] * 6
    assert all(list(r) == sorted(r) for r in records)
    assert records[3]["arguments"] == {"ticket_id": 7} and records[5]["outcome"] == "error"
    assert text.endswith("\n")


def _mini_trace():
    """Two bot agents and a helper, times by hand (see the test below)."""
    from simharness.traces.calls import Call, Calls, TaskRecord

    def call(t, e, task, agent, arch, tool, action, res):
        return Call(t, e, task, agent, agent, arch, tool, action, res)

    tasks = [TaskRecord("t1", "a0", "a0", "bot", 0.0, 10.0),
             TaskRecord("t3", "a1", "a1", "bot", 0.0, 5.0),
             TaskRecord("t2", "h0", "h0", "helper", 2.5, 6.0, parent_task="t1"),
             TaskRecord("t4", "a0", "a0", "bot", 20.0, 30.0)]
    calls = [call(1, 2, "t1", "a0", "bot", "crm", "read", "crm"),
             call(2, 3, "t3", "a1", "bot", "crm", "read", "crm"),
             call(4, 5, "t2", "h0", "helper", "wiki", "read", "wiki"),
             call(7, 8, "t1", "a0", "bot", "mail", "send", "out"),
             call(21, 22, "t4", "a0", "bot", "crm", "read", "crm"),
             call(25, 26, "t4", "a0", "bot", "mail", "send", "out")]
    return Calls(0.0, tasks, calls)


def test_calibrate_writes_the_scenario_computed_by_hand():
    scenario, fits, notes = fitting.calibrate(_mini_trace())
    crm = {"tool": "crm", "action": "read", "resource": "crm"}
    mail = {"tool": "mail", "action": "send", "resource": "out"}
    # think: 1 (t1's first call), 0.5 (hand-off at 2.5), 1.5 (helper's call), 2 (after the
    # hand-off ended at 5), 2 (t3), 1 and 3 (t4); every call lasts 1 s. Neither is near a
    # parametric family: both are kept as their observed values.
    assert scenario == {
        "schema_version": 1, "name": "calibrated",
        "description": "calibrated from a trace of 6 tool calls in 3 tasks over 30.0 s",
        "horizon": "30.0s", "replications": 5, "seed": 1,
        "weights": {"action": {"read": 1, "send": 2}},
        "timing": {"think": {"dist": "empirical", "samples": [0.5, 1.0, 1.0, 1.5, 2.0, 2.0, 3.0]},
                   "step": {"dist": "empirical", "samples": [1.0] * 6}},
        "resources": [{"name": n, "sensitivity": "internal", "destination": n}
                      for n in ("crm", "out", "wiki")],
        "tools": [{"name": "crm", "actions": ["read"], "resources": ["crm"]},
                  {"name": "mail", "actions": ["send"], "resources": ["out"]},
                  {"name": "wiki", "actions": ["read"], "resources": ["wiki"]}],
        "agents": [{"name": "bot", "count": 2, "role": {"crm": ["read"], "mail": ["send"]},
                    "task_rate": "180/h", "tasks": {"bot_1": 1, "bot_2": 1, "bot_3": 1}},
                   {"name": "helper", "count": 1, "role": {"wiki": ["read"]},
                    "task_rate": "0/h"}],
        "tasks": {"bot_1": {"steps": [crm, {"delegate": "helper", "task": "helper_1"}, mail]},
                  "bot_2": {"steps": [crm]},
                  "helper_1": {"steps": [{"tool": "wiki", "action": "read", "resource": "wiki"}]},
                  "bot_3": {"steps": [crm, mail]}},
        "declared_scope": {"source": "role"},  # 3 similar tasks: too few to predict from
    }
    assert [(f.name, f.n, f.chosen, f.median) for f in fits] == [
        ("think", 7, "empirical", 1.5), ("step", 6, "empirical", 1.0)]
    assert notes == [
        "every resource is `internal` (a trace has no sensitivity); edit them or pass --like "
        "SCENARIO",
        "4 task types from distinct call sequences; plans include whatever departures the "
        "agents made",
        "declared scope: the whole role (too few similar tasks to estimate a prediction)"]


def test_calibrate_names_types_by_frequency_and_weights_actions():
    """Three tasks of one sequence after one of another: the frequent one is bot_1; rates
    count over the trace's own window (it starts at 10 s); a boss that only hands work on has
    an empty role; unknown actions weigh 2."""
    from simharness.traces.calls import Call, Calls, TaskRecord

    def call(t, task, agent, arch, tool, action):
        return Call(t, t + 1, task, agent, agent, arch, tool, action, tool)

    tasks = [TaskRecord("b", "boss", "boss", "boss", 10.0, 20.0),
             TaskRecord("k", "w0", "w0", "bot", 11.0, 13.0, parent_task="b"),
             *[TaskRecord(f"t{i}", "w0", "w0", "bot", 20.0 + 5 * i, 22.0 + 5 * i)
               for i in range(4)]]
    calls = [call(11, "k", "w0", "bot", "admin_db", "admin"),
             call(11.25, "k", "w0", "bot", "drop", "delete"),
             call(11.5, "k", "w0", "bot", "run", "exec"),
             call(21, "t0", "w0", "bot", "get_x", "read"),
             call(21.5, "t0", "w0", "bot", "send_z", "send"),
             *[call(21 + 5 * i, f"t{i}", "w0", "bot", "put_y", "write") for i in (1, 2, 3)]]
    calls.sort(key=lambda c: c.time)
    scenario, _, notes = fitting.calibrate(Calls(0.0, tasks, calls))
    agents = {a["name"]: a for a in scenario["agents"]}
    # a mix lists the most frequent type first (here also the first by name)
    assert list(agents["bot"]["tasks"]) == ["bot_1", "bot_3"]
    assert agents["boss"]["role"] == {} and agents["boss"]["task_rate"] == f"{3600 / 27:.6g}/h"
    # bot_2 is the hand-off's sequence: a type, but not in the mix of top-level tasks
    assert agents["bot"]["tasks"] == {"bot_1": 3, "bot_3": 1}
    assert [s["tool"] for s in scenario["tasks"]["bot_2"]["steps"]] == ["admin_db", "drop", "run"]
    assert scenario["tasks"]["bot_1"] == {"steps": [
        {"tool": "put_y", "action": "write", "resource": "put_y"}]}
    assert scenario["weights"] == {"action": {"admin": 8, "delete": 4, "exec": 2, "read": 1,
                                              "send": 2, "write": 2}}
    assert scenario["description"].endswith("over 27.0 s")
    assert agents["bot"]["task_rate"] == f"{4 * 3600 / 27:.6g}/h"


def test_calibrate_mix_order_and_a_sub_second_window():
    """Sequence S runs twice as a hand-off and once on its own (3 in all: bot_1); sequence T
    twice on its own (bot_2): the mix lists bot_2 (2) before bot_1 (1). The trace lasts 0.5 s:
    rates are per that window, not per a floor."""
    from simharness.traces.calls import Call, Calls, TaskRecord

    def c(t, task, tool):
        return Call(t, t + 0.01, task, "b0", "b0", "bot", tool, "read", tool)

    tasks = [TaskRecord("p0", "p", "p", "boss", 0.0, 0.5),
             TaskRecord("s1", "b0", "b0", "bot", 0.05, 0.1, parent_task="p0"),
             TaskRecord("s2", "b0", "b0", "bot", 0.15, 0.2, parent_task="p0"),
             TaskRecord("s3", "b0", "b0", "bot", 0.25, 0.3),
             TaskRecord("u1", "b0", "b0", "bot", 0.3, 0.4),
             TaskRecord("u2", "b0", "b0", "bot", 0.4, 0.5)]
    calls = [c(0.06, "s1", "get_s"), c(0.16, "s2", "get_s"), c(0.26, "s3", "get_s"),
             c(0.31, "u1", "get_t"), c(0.41, "u2", "get_t")]
    scenario, _, _ = fitting.calibrate(Calls(0.0, tasks, calls))
    bot = next(a for a in scenario["agents"] if a["name"] == "bot")
    assert list(bot["tasks"].items()) == [("bot_2", 2), ("bot_1", 1)]
    assert scenario["tasks"]["bot_1"]["steps"][0]["tool"] == "get_s"
    assert bot["task_rate"] == f"{3 / 0.5 * 3600:.6g}/h"


def test_calibrate_with_overlapping_tasks_and_a_known_scenario(tmp_path):
    """--like takes resources, weights, identity, platform and controls from the scenario and
    widens the role to it; an agent whose tasks overlapped gets unlimited concurrency."""
    from simharness.traces.calls import Call, Calls, TaskRecord

    tasks = [TaskRecord("t1", "support-0", "support-0", "support", 0.0, 10.0),
             TaskRecord("t2", "support-0", "support-0", "support", 5.0, 12.0)]
    calls = [Call(1, 2, "t1", "support-0", "support-0", "support", "crm_api", "read", "crm"),
             Call(6, 7, "t2", "support-0", "support-0", "support", "sql", "write", "ledger")]
    like = load_scenario("baseline")
    scenario, _, notes = fitting.calibrate(Calls(0.0, tasks, calls), "x", like)
    (support,) = scenario["agents"]
    assert support["concurrency"] == "inf"
    # the scenario's role, widened by what the trace used beyond it (sql write)
    assert support["role"] == {**{k: sorted(v) for k, v in like.agent("support").role.items()},
                               "sql": ["read", "write"]}
    assert (support["identity"], support["platform"]) == ("per_agent", "first_party")
    assert scenario["resources"] == [r.model_dump(mode="json", exclude_defaults=True)
                                     for r in sorted(like.resources, key=lambda r: r.name)]
    assert scenario["tools"] == sorted(
        ({"name": t.name, "actions": sorted(t.actions), "resources": sorted(t.resources)}
         for t in like.tools), key=lambda t: t["name"])
    # a trace action or resource the scenario's tool lacks is added to the tool
    calls.append(Call(8, 9, "t2", "support-0", "support-0", "support", "crm_api", "export",
                      "crm_eu"))
    widened, _, _ = fitting.calibrate(Calls(0.0, tasks, calls), "x", like)
    crm = next(t for t in widened["tools"] if t["name"] == "crm_api")
    assert crm == {"name": "crm_api", "actions": ["delete", "export", "read", "write"],
                   "resources": ["crm", "crm_eu"]}
    assert {"name": "crm_eu", "sensitivity": "internal", "destination": "crm_eu"} in widened[
        "resources"]
    assert scenario["weights"] == like.weights.model_dump(mode="json")
    # the scenario's controls, as compact as its files give them (defaults left out)
    assert [(c["name"], c["model"]) for c in scenario["controls"]] == [
        (n, n) for n in ("none", "static_iam", "sse_only", "jit_per_task", "per_action_policy")]
    assert "params" not in scenario["controls"][0]
    assert scenario["controls"][1]["params"] == {"check": "50us"}
    assert not any("internal" in n for n in notes)
    import yaml

    (tmp_path / "x.yaml").write_text(yaml.safe_dump(scenario))
    load_scenario(tmp_path / "x.yaml")  # it runs


def test_replay_with_a_constant_check_adds_exactly_that_per_call(helpdesk, tmp_path):
    """static_iam with a 2 ms local check: every call waits 2 ms (6 calls: 12 ms), and a
    completed task takes 2 ms per call it made longer than in the trace (support-0: 3 calls,
    one of them its helper's; support-1: 3), so the mean added is 6 ms."""
    path, calls = helpdesk
    p2 = tmp_path / "slow.yaml"
    p2.write_text(SCENARIO.replace("params: {}", "params: {check: 2ms}"))
    spec = load_scenario(p2, controls=["no_send"])
    (res,) = replaying.replay(spec, calls)
    row = res.row
    assert row["actions"] == 6 and row["decisions_changed"] == 0
    assert row["latency_added_s"] == pytest.approx(0.012)
    assert row["latency_added_p50_ms"] == pytest.approx(2.0)
    assert row["latency_added_p99_ms"] == pytest.approx(2.0)
    assert row["task_time_added_mean_s"] == pytest.approx(0.006)
    assert row["calls_overlapping"] == 0 and row["control"] == "no_send"


def test_replay_spec_horizon_concurrency_and_no_misuse(helpdesk):
    path, calls = helpdesk
    spec = load_scenario(path)
    r = replaying.replay_spec(spec, calls, replications=3)
    # the trace ends at 9 s (support-0's agent span): horizon 9 + max(60, 4.5) s
    assert r.horizon == pytest.approx(69.0) and r.warmup == 0 and r.replications == 3
    assert all(a.concurrency == math.inf for a in r.agents) and r.misuse.rate == 0
    from simharness.traces.calls import Call, Calls

    long = Calls(0.0, calls.tasks, [*calls.calls, Call(0.0, 1000.0, calls.tasks[0].task, "a",
                                                       "a", "support", "t", "read", "r")])
    assert replaying.replay_spec(spec, long).horizon == pytest.approx(1500.0)


def test_overlapping_calls_of_a_task_are_replayed_in_turn_and_counted(helpdesk):
    path, calls = helpdesk
    from simharness.traces.calls import Calls

    first = calls.calls[0]  # support-0's get_ticket, 1.0-1.5
    moved = [dataclasses_replace(c, time=1.2, end=1.4) if c.tool == "send_reply" else c
             for c in calls.calls]
    spec = load_scenario(path, controls=["none"])
    built = replaying.build(replaying.replay_spec(spec, Calls(0.0, calls.tasks, moved)),
                            Calls(0.0, calls.tasks, sorted(moved, key=lambda c: c.time)))
    assert built.overlaps == 1
    task = next(t for t in built.workload.tasks if t.arrival == 0.0)
    # get_ticket, then send_reply starts when it ends (think 0), lasting its 0.2 s
    assert [(s.perm[0], s.think, round(s.duration, 9)) for s in task.steps[:2]] == [
        ("get_ticket", first.time, 0.5), ("send_reply", 0.0, 0.2)]


def dataclasses_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


def test_a_scenario_missing_many_permissions_lists_ten_then_counts(helpdesk):
    path, calls = helpdesk
    from simharness.traces.calls import Calls

    extra = [dataclasses_replace(calls.calls[0], tool=f"tool{i}") for i in range(12)]
    spec = load_scenario(path)
    with pytest.raises(TraceInputError) as e:
        replaying.check_fits(spec, Calls(0.0, calls.tasks, [*calls.calls, *extra]))
    lines = e.value.problems
    assert len(lines) == 11 and lines[-1] == "... and 2 more permissions missing"
    assert lines[0] == ("trace call tool0/read on 'get_ticket' is not a permission of scenario "
                        "helpdesk: add it to the tool's actions and resources, or map the tool "
                        "(`import traces --mapping`)")
    p2 = spec.model_copy(update={"agents": [a for a in spec.agents if a.name == "support"]})
    with pytest.raises(TraceInputError) as e:
        replaying.check_fits(p2, calls)
    assert e.value.problems[0] == (
        "trace archetype 'researcher' is not an agent of scenario helpdesk; add it to `agents`, "
        "or write the scenario with `simharness calibrate`")


# ------------------------------------------------------------------- span shapes (SDK-written)

def _tool(tracer, at, name, t0, t1, attrs=None, convention="genai"):
    from opentelemetry import trace

    base = ({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
            if convention == "genai" else {"openinference.span.kind": "TOOL", "tool.name": name})
    span = tracer.start_span(f"execute_tool {name}", start_time=at(t0),
                             attributes={**base, **(attrs or {})})
    return span, trace.use_span(span, end_on_exit=False), lambda: span.end(end_time=at(t1))


def test_a_trace_without_agent_spans_is_one_task_of_its_service(tmp_path):
    from opentelemetry import trace

    def build(tracer, at):
        root = tracer.start_span("request", start_time=at(0))
        with trace.use_span(root, end_on_exit=False):
            for name, t0, t1 in (("get_a", 1, 2), ("get_b", 3, 4)):
                _, _, end = _tool(tracer, at, name, t0, t1)
                end()
        root.end(end_time=at(5))
        _, _, end = _tool(tracer, at, "get_c", 6, 7)  # a trace of its own: a second task
        end()

    calls, _ = _import(agent.write_custom(tmp_path / "t.json", build, service="billing-bot"))
    task, other = calls.tasks
    assert task.task.startswith("trace-") and task.task != other.task
    assert (task.agent, task.archetype, task.identity) == ("billing-bot",) * 3
    assert [c.task for c in calls.calls] == [task.task] * 2 + [other.task]
    # the task spans the whole trace (every span, not only the tools)
    assert (task.start, task.end, other.start, other.end) == (0.0, 5.0, 6.0, 7.0)


def test_nested_tools_agent_names_and_attribute_fallbacks(tmp_path):
    """A tool inside a tool records its parent call; an agent named only by its span name, by
    agent.name, by graph.node.id, or a create_agent span; arguments that are text or a list."""
    from opentelemetry import trace

    def build(tracer, at):
        specs = [("invoke_agent planner", {"gen_ai.operation.name": "create_agent"}),
                 ("x", {"openinference.span.kind": "AGENT", "agent.name": "writer"}),
                 ("y", {"openinference.span.kind": "AGENT", "graph.node.id": "router"}),
                 ("", {"gen_ai.operation.name": "invoke_agent"})]
        for i, (name, attrs) in enumerate(specs):
            a = tracer.start_span(name, start_time=at(10 * i), attributes=attrs)
            with trace.use_span(a, end_on_exit=False):
                outer, ctx, end_outer = _tool(tracer, at, "get_doc", 10 * i + 1, 10 * i + 4, {
                    "gen_ai.tool.call.arguments": "not json" if i == 0 else "[1, 2]"})
                with ctx:
                    _, _, end = _tool(tracer, at, "read_page", 10 * i + 2, 10 * i + 3, {
                        "input.value": '{"page": 3}', "simharness.identity": "x"},
                        convention="openinference")
                    end()
                end_outer()
            a.end(end_time=at(10 * i + 5))

    calls, _ = _import(agent.write_custom(tmp_path / "t.json", build))
    by_arch = collections.defaultdict(list)
    for c in calls.calls:
        by_arch[c.archetype].append(c)
    assert sorted(by_arch) == ["agent", "planner", "router", "writer"]
    outer, inner = by_arch["planner"]
    assert inner.parent_call == outer.call_id and outer.parent_call is None
    assert outer.arguments == {"input": "not json"} and inner.arguments == {"page": 3}
    assert by_arch["writer"][0].arguments == {"input": [1, 2]}
    assert by_arch["agent"][0].agent == "agent"  # nothing names it


def test_spans_written_by_simharness_carry_their_mapping_and_identity(tmp_path):
    from opentelemetry import trace

    def build(tracer, at):
        a = tracer.start_span("invoke_agent support", start_time=at(0), attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support",
            "gen_ai.agent.id": "support-3", "simharness.identity": "support"})
        with trace.use_span(a, end_on_exit=False):
            _, _, end = _tool(tracer, at, "crm_api", 1, 2, {"simharness.action": "delete",
                                                              "simharness.resource": "crm"})
            end()
        a.end(end_time=at(3))

    calls, notes = _import(agent.write_custom(tmp_path / "t.json", build))
    (c,) = calls.calls
    assert (c.action, c.resource, c.agent, c.identity) == ("delete", "crm", "support-3", "support")
    assert notes == []
    # a mapping file entry wins over the span's own attributes
    calls, _ = _import(tmp_path / "t.json", Mapping({"crm_api": {"action": "read"}}))
    assert (calls.calls[0].action, calls.calls[0].resource) == ("read", "crm_api")


def test_delegating_task_without_calls_of_its_own_is_kept(tmp_path):
    from opentelemetry import trace

    def build(tracer, at):
        boss = tracer.start_span("b", start_time=at(0), attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "boss"})
        idle = tracer.start_span("i", start_time=at(0), attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "idle"})
        idle.end(end_time=at(1))
        with trace.use_span(boss, end_on_exit=False):
            w = tracer.start_span("w", start_time=at(1), attributes={
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "worker"})
            with trace.use_span(w, end_on_exit=False):
                _, _, end = _tool(tracer, at, "get_x", 2, 3)
                end()
            w.end(end_time=at(4))
        boss.end(end_time=at(5))

    calls, _ = _import(agent.write_custom(tmp_path / "t.json", build))
    assert [(t.archetype, t.parent_task is None) for t in calls.tasks] == [
        ("boss", True), ("worker", False)]  # the idle agent made no call: left out


def test_duplicate_span_ids_and_empty_inputs_are_refused(tmp_path):
    path = agent.write_otlp(tmp_path / "t.json")
    twice = tmp_path / "twice.json"
    twice.write_text(path.read_text() + path.read_text())
    with pytest.raises(TraceInputError, match="the span id appears twice in trace"):
        _import(twice)
    with pytest.raises(TraceInputError, match="no spans in the input"):
        calls_from_spans([])

    def build(tracer, at):
        tracer.start_span("just a span", start_time=at(0)).end(end_time=at(1))

    with pytest.raises(TraceInputError, match="no tool spans found"):
        _import(agent.write_custom(tmp_path / "none.json", build))


def test_any_value_and_ids_decode_every_otlp_form():
    from simharness.traces.otlp import _any_value, _hex_id

    assert _any_value({"stringValue": "a"}) == "a"
    assert _any_value({"boolValue": False}) is False
    assert _any_value({"intValue": "12"}) == 12
    assert _any_value({"doubleValue": 1.5}) == 1.5
    assert _any_value({"bytesValue": "AAE="}) == "AAE="
    assert _any_value({"arrayValue": {"values": [{"intValue": 1}, {"stringValue": "x"}]}}) == [1, "x"]
    assert _any_value({"arrayValue": {}}) == []
    assert _any_value({"kvlistValue": {"values": [{"key": "k", "value": {"doubleValue": 2}}]}}) == {"k": 2.0}
    assert _any_value({}) is None and _any_value("x") is None
    assert _hex_id("0x" + "ab" * 8, 8) == "ab" * 8
    assert _hex_id("AB" * 8, 8) == "ab" * 8
    assert _hex_id("q80=", 2) == "abcd"  # base64
    assert _hex_id("ab" * 8, 16) is None and _hex_id("", 8) is None and _hex_id(None, 8) is None
    assert _hex_id("zz" * 8, 8) is None and _hex_id("!!!", 8) is None


def test_status_and_old_field_names_are_read(tmp_path):
    """Hand-made only in what the SDK cannot write: the string status code of OTLP/JSON and
    the pre-1.0 `instrumentationLibrarySpans` key; a span without endTimeUnixNano."""
    span = {"traceId": "1" * 32, "spanId": "2" * 16, "name": "t", "startTimeUnixNano": "7",
            "status": {"code": "STATUS_CODE_ERROR"},
            "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
                           {"key": "gen_ai.tool.name", "value": {"stringValue": "get_x"}}]}
    doc = {"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "old"}}]},
        "instrumentationLibrarySpans": [{"spans": [span]}]}]}
    p = tmp_path / "old.json"
    p.write_text(json.dumps(doc))
    (s,) = read_spans([p])
    assert (s.start, s.end, s.error, s.resource) == (7, 7, True, {"service.name": "old"})
    assert s.label() == f"{p}:1: span {'2' * 16}"


def test_unreadable_files_are_named(tmp_path):
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b"\xff\xfe{")
    with pytest.raises(TraceInputError) as e:
        read_spans([bad, tmp_path / "missing.json"])
    assert len(e.value.problems) == 2
    assert e.value.problems[0].startswith(f"{bad}: cannot read (UnicodeDecodeError")
    assert e.value.problems[1].startswith(f"{tmp_path / 'missing.json'}: cannot read (")


def test_export_span_by_span(helpdesk, tmp_path, monkeypatch):
    """The replay of the scripted trace under a control that denies send_reply, exported: ids,
    parents, names, times, attributes and status worked out from the export's definition."""
    _, calls = helpdesk
    nosend = tmp_path / "nosend.yaml"
    nosend.write_text(SCENARIO.replace(", send_reply: [send]}", "}"))
    (res,) = replaying.replay(load_scenario(nosend, controls=["no_send"]), calls)
    log = res.log
    monkeypatch.setattr(export, "TASKS_PER_LINE", 1)
    out = export.write_run(tmp_path / "x.jsonl", log, res.parents, "helpdesk", "no_send", 4)
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(docs) == 2  # two top-level tasks, one per line
    resource = docs[0]["resourceSpans"][0]["resource"]["attributes"]
    assert resource == [{"key": "service.name", "value": {"stringValue": "simharness"}},
                        {"key": "simharness.scenario", "value": {"stringValue": "helpdesk"}},
                        {"key": "simharness.control", "value": {"stringValue": "no_send"}},
                        {"key": "simharness.replication", "value": {"intValue": "4"}}]
    assert docs[0]["resourceSpans"][0]["scopeSpans"][0]["scope"] == {"name": "simharness",
                                                                     "version": "1"}
    spans = {s["spanId"]: s for d in docs for s in d["resourceSpans"][0]["scopeSpans"][0]["spans"]}
    assert res.parents == {2: 0}  # the researcher's task (id 2) was delegated by task 0
    root, researcher = spans["1000000000000000"], spans["1000000000000002"]
    assert root["traceId"] == researcher["traceId"] == "00000004" + "0" * 24
    assert spans["1000000000000001"]["traceId"] == "00000004" + "0" * 23 + "1"
    assert "parentSpanId" not in root and researcher["parentSpanId"] == "1000000000000000"
    assert root["name"] == "invoke_agent support" and root["kind"] == 1
    rec0 = {r[T["task"]]: r for r in log.tasks}[0]
    assert {kv["key"]: kv["value"] for kv in root["attributes"]} == {
        "gen_ai.operation.name": {"stringValue": "invoke_agent"},
        "gen_ai.agent.name": {"stringValue": "support"},
        "gen_ai.agent.id": {"stringValue": "support-0"},
        "simharness.identity": {"stringValue": "support-0"},
        "simharness.task.type": {"stringValue": "invoke_agent support"},
        "simharness.task.status": {"stringValue": rec0[T["status"]]},
        "simharness.task.arrival_s": {"doubleValue": 0.0}}
    records = {r[T["task"]]: r for r in log.tasks}
    assert root["startTimeUnixNano"] == str(export.EPOCH_NS)
    assert root["endTimeUnixNano"] == str(export.EPOCH_NS + round(records[0][T["end"]] * 1e9))
    for i, a in enumerate(log.actions):
        tool, decision = spans[f"2{i:015x}"], spans[f"3{i:015x}"]
        assert tool["parentSpanId"] == f"1{a[A['task']]:015x}"
        assert decision["parentSpanId"] == tool["spanId"] and decision["name"] == "apply_guardrail"
        t, lat = a[A["time"]], a[A["latency"]]
        assert tool["startTimeUnixNano"] == decision["startTimeUnixNano"] == str(
            export.EPOCH_NS + round(t * 1e9))
        assert decision["endTimeUnixNano"] == str(export.EPOCH_NS + round((t + lat) * 1e9))
        assert tool["endTimeUnixNano"] == str(
            export.EPOCH_NS + round((t + lat + a[A["duration"]]) * 1e9))
        attrs = {kv["key"]: kv["value"] for kv in tool["attributes"]}
        dattrs = {kv["key"]: kv["value"] for kv in decision["attributes"]}
        denied = a[A["tool"]] == "send_reply"
        assert a[A["allowed"]] is (not denied)
        assert tool["name"] == f"execute_tool {a[A['tool']]}"
        assert attrs == {
            "gen_ai.operation.name": {"stringValue": "execute_tool"},
            "gen_ai.tool.name": {"stringValue": a[A["tool"]]},
            "gen_ai.tool.call.id": {"stringValue": f"r4-a{i}"},
            "gen_ai.agent.name": {"stringValue": a[A["archetype"]]},
            "gen_ai.agent.id": {"stringValue": log.workload.agents[a[A["agent"]]].name},
            "simharness.action": {"stringValue": a[A["action"]]},
            "simharness.resource": {"stringValue": a[A["resource"]]},
            "simharness.identity": {"stringValue": a[A["identity"]]},
            "simharness.source": {"stringValue": "plan"},
            **({"error.type": {"stringValue": "denied"}} if denied else {})}
        assert dattrs == {
            "gen_ai.operation.name": {"stringValue": "apply_guardrail"},
            "gen_ai.security.decision.type": {"stringValue": "deny" if denied else "allow"},
            "gen_ai.security.policy.id": {"stringValue": "no_send"},
            "simharness.decision.reasons": {"stringValue": a[A["reasons"]]},
            "simharness.decision.latency_s": {"doubleValue": lat}}
        if denied:
            assert tool["status"] == {"code": 2, "message": "denied: " + a[A["reasons"]]}
        else:
            assert "status" not in tool
    assert export.run_path("d", "jit", 3, "abcdef0123456789") == Path("d/jit-r3-abcdef0123.otlp.jsonl")


def test_export_attribute_types_and_unfinished_tasks(helpdesk, tmp_path):
    assert export._attr("b", True) == {"key": "b", "value": {"boolValue": True}}
    assert export._attr("i", 3) == {"key": "i", "value": {"intValue": "3"}}
    assert export._attr("f", 0.5) == {"key": "f", "value": {"doubleValue": 0.5}}
    assert export._attr("s", "x") == {"key": "s", "value": {"stringValue": "x"}}
    path, calls = helpdesk
    (res,) = replaying.replay(load_scenario(path, controls=["none"]), calls)
    res.log.tasks[1][T["end"]] = math.nan  # still running at the horizon
    (_, spans), = [g for g in export.spans(res.log, res.parents, "none", 0) if g[0] == 1]
    assert spans[0]["endTimeUnixNano"] == str(export.EPOCH_NS + round(res.log.horizon * 1e9))


def test_json_lines_read_the_same_with_either_parser(tmp_path, monkeypatch):
    import simharness.traces.otlp as otlp

    path = agent.write_otlp(tmp_path / "t.json", lines=3)
    fast = [(s.span_id, s.start, s.attributes) for s in read_spans([path])]
    monkeypatch.setattr(otlp, "_loads", lambda: json.loads)
    assert [(s.span_id, s.start, s.attributes) for s in read_spans([path])] == fast
    monkeypatch.undo()
    monkeypatch.setitem(__import__("sys").modules, "orjson", None)  # as if not installed
    assert otlp._loads() is json.loads


def test_built_workload_is_the_script(helpdesk):
    """The replay workload of the scripted trace, step by step, as worked out from the script
    in otel_agent.py (think = gap since the task's previous step ended)."""
    from simharness.actions import Action, Delegation

    path, calls = helpdesk
    spec = replaying.replay_spec(load_scenario(path), calls)
    built = replaying.build(spec, calls)
    w = built.workload
    assert [(a.index, a.name, a.archetype, a.identity_mode, a.platform) for a in w.agents] == [
        (0, "support-0", "support", "per_agent", "first_party"),
        (1, "support-1", "support", "per_agent", "first_party"),
        (2, "researcher-0", "researcher", "per_agent", "first_party")]
    assert w.by_archetype == {"support": [0, 1], "researcher": [2]}
    assert w.misuse == [] and w.replication == 0
    s0, s1 = w.tasks
    assert (s0.id, s0.type, s0.agent, s0.arrival, s0.depth) == (0, "invoke_agent support", 0, 0.0, 0)
    get, hand, send = s0.steps
    assert type(get) is Action and type(send) is Action and type(hand) is Delegation
    assert (get.perm, get.think, get.duration, get.bytes_out, dict(get.args.values)) == (
        ("get_ticket", "read", "get_ticket"), 1.0, 0.5, 0, {"ticket_id": 7})
    assert hand.think == 0.5
    sub = hand.task
    assert (sub.id, sub.type, sub.agent, sub.arrival, sub.depth) == (
        2, "invoke_agent researcher", 2, 2.0, 1)
    (search,) = sub.steps
    assert (search.perm[0], search.think, search.duration) == ("search_wiki", 1.0, 1.25)
    assert (send.perm[0], send.think, send.duration) == ("send_reply", 2.75, 0.5)
    assert s0.scope == {("get_ticket", "read", "get_ticket"), ("send_reply", "send", "send_reply")}
    assert dict(s0.declared_args) == {"ticket_id": {7}, "to": {"alice@example.com"},
                                      "body": {"done"}}
    assert [(st.perm[0], st.think, st.duration) for st in s1.steps] == [
        ("get_ticket", 0.75, 0.5), ("lookup_order", 0.25, 0.5), ("update_ticket", 2.5, 1.0)]
    assert all(0 <= st.risk <= 1 for st in s1.steps)
    assert built.ends == {0: 7.5, 1: 6.0, 2: 4.25} and built.overlaps == 0


def test_overlaps_are_counted_but_a_call_starting_at_the_previous_end_is_not(helpdesk):
    from simharness.traces.calls import Calls

    path, calls = helpdesk
    spec = replaying.replay_spec(load_scenario(path), calls)
    s1 = [c for c in calls.calls if c.agent == "support-1"]  # 1.25-1.75, 2.0-2.5, 5.0-6.0
    touching = [dataclasses_replace(c, time=1.75) if c is s1[1] else c for c in calls.calls]
    assert replaying.build(spec, Calls(0.0, calls.tasks, touching)).overlaps == 0
    both = [dataclasses_replace(c, time=1.5) if c is s1[1] else
            dataclasses_replace(c, time=2.25) if c is s1[2] else c for c in calls.calls]
    assert replaying.build(spec, Calls(0.0, calls.tasks,
                                       sorted(both, key=lambda c: c.time))).overlaps == 2


def test_replay_summaries_when_nothing_completes_or_nothing_is_called(helpdesk, tmp_path):
    """A task whose only call is denied (on_deny: abort, the default) completes nothing: no
    time added is 0, not an error; a task without calls gives latencies of 0."""
    from simharness.traces.calls import Call, Calls, TaskRecord

    nosend = tmp_path / "nosend.yaml"
    nosend.write_text(SCENARIO.replace(", send_reply: [send]}", "}"))
    task = TaskRecord("t", "support-0", "support-0", "support", 0.0, 2.0)
    one = Calls(0.0, [task], [Call(0.5, 1.0, "t", "support-0", "support-0", "support",
                                   "send_reply", "send", "send_reply")])
    (res,) = replaying.replay(load_scenario(nosend, controls=["no_send"]), one)
    assert (res.row["tasks_failed"], res.row["decisions_changed"]) == (1, 1)
    assert res.row["task_time_added_mean_s"] == 0.0
    assert res.row["latency_added_p50_ms"] == pytest.approx(0.05)  # static_iam's 50 us check
    (res,) = replaying.replay(load_scenario(nosend, controls=["no_send"]), Calls(0.0, [task], []))
    assert (res.row["latency_added_p50_ms"], res.row["latency_added_p99_ms"],
            res.row["latency_added_s"], res.row["actions"]) == (0.0, 0.0, 0.0, 0)


def test_replay_spec_turns_misuse_off_and_has_a_floor(helpdesk):
    from simharness.traces.calls import Calls, TaskRecord

    path, calls = helpdesk
    spec = load_scenario(path, overrides=["misuse.rate=0.3"])
    assert spec.misuse.rate == 0.3 and replaying.replay_spec(spec, calls).misuse.rate == 0
    short = Calls(0.0, [TaskRecord("t", "a", "a", "support", 0.0, 0.5)], [])
    assert replaying.replay_spec(spec, short).horizon == 61.0  # at least 1 s, plus a minute


def test_calls_file_messages_in_full(tmp_path):
    path = _calls_file(tmp_path, TASK, {k: v for k, v in CALL.items() if k not in ("tool", "agent")},
                       {**CALL, "b": 1, "a": 2}, {k: v for k, v in CALL.items() if k != "record"},
                       {**CALL, "tool": ""}, {**CALL, "end": 0})
    with pytest.raises(TraceInputError) as e:
        read_calls(path)
    assert e.value.problems == [
        f"{path}:3: missing agent, tool",
        f"{path}:4: unknown a, b",
        f'{path}:5: "record" must be "task" or "call"',
        f"{path}:6: task, agent, identity, archetype, tool, action, resource must be non-empty text",
        f"{path}:7: time and end must be numbers, end >= time"]
    (tmp_path / "h.jsonl").write_text('{"format": "x"}\n')
    with pytest.raises(TraceInputError) as e:
        read_calls(tmp_path / "h.jsonl")
    assert e.value.problems == [
        f"{tmp_path / 'h.jsonl'}:1: not a calls file (the first line must be the header "
        '{"format": "simharness-calls", ...} that `simharness import traces` writes)']


def test_calls_file_lists_at_most_20_dangling_references_and_t0_defaults_to_0(tmp_path):
    orphans = [{**CALL, "task": f"x{i}", "call_id": f"c{i}"} for i in range(25)]
    children = [{**TASK, "task": f"s{i}", "parent_task": f"p{i}"} for i in range(25)]
    path = _calls_file(tmp_path, TASK, *orphans, *children)
    with pytest.raises(TraceInputError) as e:
        read_calls(path)
    assert len(e.value.problems) == 40
    assert e.value.problems[0] == f"{path}: call c0 names task 'x0', which has no task record"
    assert e.value.problems[20] == f"{path}: task s0 names parent task 'p0', which has no record"
    path = _calls_file(tmp_path, TASK, header='{"format": "simharness-calls", "version": 1}')
    assert read_calls(path).t0 == 0.0


@pytest.mark.parametrize("console", [False, True])
def test_an_error_status_alone_marks_a_failed_call(tmp_path, console):
    from opentelemetry.trace import Status, StatusCode

    def build(tracer, at):
        for name, status, t in (("get_a", StatusCode.ERROR, 1), ("get_b", StatusCode.OK, 3)):
            span, _, end = _tool(tracer, at, name, t, t + 1)
            span.set_status(Status(status))
            end()
        _, _, end = _tool(tracer, at, "get_c", 5, 6, {"error.type": "Timeout"})  # status unset
        end()

    calls, _ = _import(agent.write_custom(tmp_path / "t.json", build, console=console))
    assert [(c.tool, c.outcome) for c in calls.calls] == [
        ("get_a", "error"), ("get_b", "ok"), ("get_c", "error")]


def test_a_console_span_ending_before_it_starts_is_named(tmp_path):
    p = tmp_path / "c.json"
    ids = {"trace_id": "0x" + "1" * 32, "span_id": "0x" + "2" * 16}
    p.write_text(json.dumps({"context": ids, "start_time": "2026-01-01T00:00:02Z",
                             "end_time": "2026-01-01T00:00:01Z"}))
    with pytest.raises(TraceInputError) as e:
        read_spans([p])
    assert e.value.problems == [f"{p}:1: span {'2' * 16}: ends before it starts"]


def test_replay_controls_and_replication_arguments(helpdesk):
    path, calls = helpdesk
    spec = load_scenario(path)
    (only,) = replaying.replay(spec, calls, controls=["no_send"])
    assert only.control == only.row["control"] == "no_send"
    everything = replaying.replay(spec, calls)
    assert [r.control for r in everything] == ["none", "no_send"]
    # a replication draws its own risk scores (the trace has none); 0 is the default
    risks = [[a[A["risk"]] for a in replaying.replay(spec, calls, ["none"], rep)[0].log.actions]
             for rep in (0, 1)]
    assert risks[0] != risks[1]
    assert [a[A["risk"]] for a in replaying.replay(spec, calls, ["none"])[0].log.actions] == risks[0]


def test_exactly_ten_missing_permissions_are_all_listed(helpdesk):
    path, calls = helpdesk
    from simharness.traces.calls import Calls

    extra = [dataclasses_replace(calls.calls[0], tool=f"tool{i}") for i in range(10)]
    with pytest.raises(TraceInputError) as e:
        replaying.check_fits(load_scenario(path), Calls(0.0, calls.tasks, [*calls.calls, *extra]))
    assert len(e.value.problems) == 10 and str(e.value) == "\n".join(e.value.problems)


def test_import_traces_applies_the_mapping_and_writes_odd_arguments_as_text(tmp_path):
    import datetime

    from simharness.traces.calls import import_traces

    m = tmp_path / "m.yaml"
    m.write_text("tools: {update_ticket: {action: delete}}\n")
    calls, notes = import_traces([agent.write_otlp(tmp_path / "t.json")], tmp_path / "c.jsonl", m)
    assert {c.tool: c.action for c in calls.calls}["update_ticket"] == "delete"
    assert read_calls(tmp_path / "c.jsonl").calls == calls.calls
    assert [n.split("'")[1] for n in notes] == ["lookup_order"]
    calls.calls[0].arguments = {"when": datetime.date(2026, 1, 2)}
    write_calls(tmp_path / "d.jsonl", calls)
    assert read_calls(tmp_path / "d.jsonl").calls[0].arguments == {"when": "2026-01-02"}


def test_fit_report_has_a_line_per_fit():
    fits = [fitting.fit_duration("think", [1.0, 2.0]), fitting.fit_duration("step", [])]
    assert fitting.format_fits(fits).split("\n")[1] == (
        "step: 0 values, median 0 s; no fit; using constant")


def test_fit_duration_edge_cases():
    assert fitting.fit_duration("t", []) == fitting.Fit("t", 0, "constant", {}, 0.0, 0.0)
    assert fitting.fit_duration("t", [0, 0, 0]) == fitting.Fit("t", 3, "constant", {}, 0.0, 0.0)
    some_zero = fitting.fit_duration("t", [0.0, 0.0, 1.0, 2.0, 3.0])
    assert some_zero.chosen != "constant" and set(some_zero.ks) == {"exponential"}
    same = fitting.fit_duration("t", [2.0] * 5)  # no spread: no lognormal
    assert set(same.ks) == {"exponential"} and same.chosen == "empirical"
    assert same.dist == {"dist": "empirical", "samples": [2.0] * 5} and same.median == 2.0


def test_ks_distance_against_a_hand_computation():
    """x = 1, 2, 3 against uniform(0, 4): the largest gap is 0.25, at 1 (from below) and at 3."""
    x = np.array([1.0, 2.0, 3.0])
    assert fitting._ks(x, x / 4) == pytest.approx(0.25)
    assert fitting._ks(np.array([2.0]), np.array([0.9])) == pytest.approx(0.9)  # before the jump
    assert fitting._ks(np.array([2.0]), np.array([0.2])) == pytest.approx(0.8)  # after it


def _brute_predicted(groups, granted):
    """Recall and extra of the leave-one-out majority predictor, the slow obvious way."""
    recalls, extras = [], []
    for members in groups:
        if len(members) < 5:
            continue
        for i, m in enumerate(members):
            others = [o for j, o in enumerate(members) if j != i]
            seen = set().union(*others)
            pred = {p for p in seen if sum(p in o for o in others) >= len(others) / 2}
            recalls.append(len(m & pred) / len(m))
            extras.append(len(pred - m) / max(len(granted - m), 1))
    return float(np.mean(recalls)), float(np.mean(extras))


@pytest.mark.parametrize("seed", range(6))
def test_predicted_scope_agrees_with_brute_force(seed):
    from simharness.traces.calls import Call, Calls, TaskRecord

    rng = np.random.default_rng(seed)
    perms = [("t", a, r) for a in ("read", "write", "send") for r in ("r1", "r2")]
    tasks, calls, groups = [], [], {}
    for k in range(int(rng.integers(4, 14))):
        first = ("t", "read", "r1") if k % 3 else ("t", "read", "r2")  # two groups
        used = [first] + [p for p in perms if p != first and rng.random() < 0.45]
        groups.setdefault(first, []).append(frozenset(used))
        tasks.append(TaskRecord(f"k{k}", "a", "a", "bot", 10.0 * k, 10.0 * k + 9))
        for j, p in enumerate(used):
            calls.append(Call(10.0 * k + j, 10.0 * k + j + 0.5, f"k{k}", "a", "a", "bot", *p))
    scenario, _, notes = fitting.calibrate(Calls(0.0, tasks, calls))
    if all(len(g) < 5 for g in groups.values()):
        assert scenario["declared_scope"] == {"source": "role"}
        return
    # the calibrated role: every action used, on every resource the tool was seen on
    granted = {("t", a, r) for a in {c.action for c in calls} for r in ("r1", "r2")}
    recall, extra = _brute_predicted(list(groups.values()), granted)
    assert scenario["declared_scope"] == {"source": "predicted",
                                          "recall": pytest.approx(recall, abs=1e-5),
                                          "extra": pytest.approx(extra, abs=1e-5)}
    assert notes[-1] == (
        f"declared scope: predicted, recall {scenario['declared_scope']['recall']}, extra "
        f"{scenario['declared_scope']['extra']} (what a predictor would declare that names the "
        "permissions most other tasks of the archetype with the same first call used)")


def test_touching_tasks_do_not_overlap_and_ties_in_the_mix_go_by_name():
    from simharness.traces.calls import Call, Calls, TaskRecord

    tasks = [TaskRecord("u1", "b0", "b0", "bot", 0.0, 1.0),
             TaskRecord("u2", "b0", "b0", "bot", 1.0, 2.0),  # starts as u1 ends
             TaskRecord("p", "p0", "p0", "boss", 2.0, 3.0),
             TaskRecord("s", "b1", "b1", "bot", 2.0, 3.0, parent_task="p")]
    calls = [Call(0.1, 0.2, "u1", "b0", "b0", "bot", "get_x", "read", "x"),
             Call(1.1, 1.2, "u2", "b0", "b0", "bot", "get_y", "read", "y"),
             Call(2.1, 2.2, "s", "b1", "b1", "bot", "get_y", "read", "y")]
    scenario, _, _ = fitting.calibrate(Calls(0.0, tasks, calls))
    bot = next(a for a in scenario["agents"] if a["name"] == "bot")
    assert "concurrency" not in bot
    # get_y ran twice (bot_1), get_x once (bot_2); as top-level tasks once each: by name
    assert list(bot["tasks"].items()) == [("bot_1", 1), ("bot_2", 1)]


def test_replay_defaults_and_eleven_missing_permissions(helpdesk):
    from simharness.traces.calls import Calls

    path, calls = helpdesk
    spec = load_scenario(path)
    assert replaying.replay_spec(spec, calls).replications == 1
    (r,) = replaying.replay(spec, calls, ["no_send"])
    assert r.log.control.name == "no_send"
    extra = [dataclasses_replace(calls.calls[0], tool=f"tool{i}") for i in range(11)]
    with pytest.raises(TraceInputError) as e:
        replaying.check_fits(spec, Calls(0.0, calls.tasks, [*calls.calls, *extra]))
    assert e.value.problems[-1] == "... and 1 more permissions missing"


def test_each_replayed_task_gets_its_own_predicted_scope(helpdesk, tmp_path):
    """Replayed tasks of one type use different calls: a prediction that keeps every planned
    permission and adds none (recall 1, extra 0) declares exactly each task's own calls, not
    those of the first task of its type."""
    path, calls = helpdesk
    p2 = tmp_path / "pred.yaml"
    p2.write_text(SCENARIO + "declared_scope: {source: predicted, recall: 1, extra: 0}\n")
    built = replaying.build(replaying.replay_spec(load_scenario(p2), calls), calls)
    s0, s1 = built.workload.tasks
    assert s0.type == s1.type and s0.scope != s1.scope
    assert (s0.declared, s1.declared) == (s0.scope, s1.scope)
