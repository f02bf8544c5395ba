"""loader: YAML -> ScenarioSpec, with every problem reported as file:line:col: path: message."""

from __future__ import annotations

import pickle
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simharness import loader
from simharness.loader import (
    Problem,
    ScenarioError,
    data_dir,
    dump_scenario,
    find_scenario,
    list_profiles,
    load_scenario,
    load_yaml,
    scenario_sha256,
    validate_files,
)
from simharness.spec import ScenarioSpec

MINIMAL = """\
schema_version: 1
name: mini
horizon: 1h
replications: 2
resources:
  - {name: crm, sensitivity: confidential, destination: crm.example}
  - {name: wiki, sensitivity: internal, destination: wiki.example}
tools:
  - {name: crm_api, actions: [read, write], resources: [crm]}
  - {name: docs, actions: [read], resources: [wiki]}
agents:
  - name: support
    count: 3
    role: {crm_api: [read, write], docs: [read]}
    task_rate: 6/h
    tasks: {answer: 1}
tasks:
  answer:
    steps:
      - {tool: crm_api, action: read, resource: crm}
      - {tool: docs, action: read, resource: wiki}
controls: [allow, {name: inline, model: static_iam}]
"""

ALLOW_PROFILE = """\
name: allow
model: per_action_policy
description: test profile
params: {pdp: {rtt: 1ms}}
"""


@pytest.fixture
def scenario_dir(tmp_path: Path) -> Path:
    (tmp_path / "controls").mkdir()
    (tmp_path / "controls" / "allow.yaml").write_text(ALLOW_PROFILE)
    return tmp_path


def write(directory: Path, text: str, name: str = "s.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path, **kwargs) -> list[Problem]:
    """The problems of a bad scenario; each names a file and carries a position or a path."""
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, **kwargs)
    problems = info.value.problems
    assert problems
    for p in problems:
        assert p.file in (str(path), "--set", "--controls") or p.file.endswith((".yaml", ".csv"))
        assert p.line is not None or p.path or p.file.startswith("--") or not Path(p.file).is_file()
    assert str(info.value) == "\n".join(map(str, problems))
    return problems


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


# --------------------------------------------------------------------------- valid input


def test_minimal_scenario_loads_with_defaults(scenario_dir):
    spec = load_scenario(write(scenario_dir, MINIMAL))
    assert isinstance(spec, ScenarioSpec)
    assert spec.horizon == 3600.0 and spec.warmup == 0.0
    assert spec.agent("support").task_rate == pytest.approx(6 / 3600)
    assert spec.agent("support").platform == "first_party"
    assert spec.agent("support").identity == "per_agent"
    assert spec.misuse.rate == 0.0
    assert spec.weights.sensitivity["restricted"] == 16
    assert [c.name for c in spec.controls] == ["allow", "inline"]
    assert spec.control("allow").params == {"pdp": {"rtt": "1ms"}}
    assert spec.timing.step.mean() > 0  # defaults are distribution models, not raw dicts


def test_set_overrides_are_typed(scenario_dir):
    path = write(scenario_dir, MINIMAL)
    spec = load_scenario(path, overrides=["misuse.rate=0.1", "replications=5", "horizon=2h",
                                          "agents.support.count=7", "tasks.answer.steps.1.action=read"])
    assert spec.misuse.rate == 0.1 and isinstance(spec.misuse.rate, float)
    assert spec.replications == 5 and spec.horizon == 7200.0
    assert spec.agent("support").count == 7


def test_set_inside_a_defaulted_mapping_keeps_the_other_defaults(scenario_dir):
    path = write(scenario_dir, MINIMAL)
    spec = load_scenario(path, overrides=["weights.sensitivity.secret=32", "timing.step.p99=5s"])
    assert spec.weights.sensitivity["secret"] == 32 and spec.weights.sensitivity["internal"] == 1
    assert spec.timing.step.p99 == 5.0 and spec.timing.step.p50 == 0.3


def test_set_controls_params(scenario_dir):
    path = write(scenario_dir, MINIMAL)
    spec = load_scenario(path, overrides=["controls.allow.pdp.servers=2",
                                          "controls.inline.detector.threshold=0.8"])
    assert spec.control("allow").params == {"pdp": {"rtt": "1ms", "servers": 2}}
    assert spec.control("inline").params == {"detector": {"threshold": 0.8}}


def test_control_models_check_their_params(scenario_dir):
    path = write(scenario_dir, MINIMAL)
    p = only(problems_of(path, overrides=["controls.allow.pdp.servers=many"]))
    assert (p.file, p.path) == ("--set", "controls.allow.pdp.servers")
    (scenario_dir / "controls" / "allow.yaml").write_text(ALLOW_PROFILE.replace("rtt", "rtx"))
    p = only(problems_of(path))
    assert p.file.endswith("allow.yaml") and (p.line, p.path) == (4, "params.pdp.rtx")


def test_unknown_control_model(scenario_dir):
    path = write(scenario_dir, MINIMAL.replace("model: static_iam", "model: static_ima"))
    p = only(problems_of(path))
    assert (p.path, p.line) == ("controls.inline.model", line_of(path, "static_ima"))
    assert "unknown control model 'static_ima' (did you mean 'static_iam'?)" in p.message
    (scenario_dir / "controls" / "allow.yaml").write_text(ALLOW_PROFILE.replace("model: per_", "model: pr_"))
    p = only(problems_of(write(scenario_dir, MINIMAL)))
    assert p.file.endswith("allow.yaml") and (p.line, p.path) == (2, "model")


def test_controls_argument_selects_and_orders(scenario_dir):
    path = write(scenario_dir, MINIMAL)
    spec = load_scenario(path, controls=["inline", "allow"])
    assert [c.name for c in spec.controls] == ["inline", "allow"]
    (scenario_dir / "controls" / "extra.yaml").write_text("name: extra\nmodel: none\n")
    spec = load_scenario(path, controls=["extra"])  # any known profile may be selected
    assert [c.name for c in spec.controls] == ["extra"]


def test_controls_argument_unknown_name(scenario_dir):
    path = write(scenario_dir, MINIMAL)
    p = only(problems_of(path, controls=["inlne"]))
    assert p.file == "--controls" and "did you mean 'inline'?" in p.message


def test_profile_next_to_scenario_hides_shipped_one(scenario_dir):
    (scenario_dir / "controls" / "none.yaml").write_text("name: none\nmodel: none\ndescription: mine\n")
    path = write(scenario_dir, MINIMAL.replace("controls: [allow,", "controls: [none,"))
    assert load_scenario(path).control("none").description == "mine"


def test_list_profiles_first_directory_wins(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, names in ((a, ["x", "y"]), (b, ["y", "z"])):
        d.mkdir()
        for n in names:
            (d / f"{n}.yaml").write_text(f"name: {n}\nmodel: none\n")
    assert list_profiles([a, b, tmp_path / "missing"]) == {
        "x": a / "x.yaml", "y": a / "y.yaml", "z": b / "z.yaml"}


def test_shipped_profiles(scenario_dir):
    if not (data_dir("controls") / "none.yaml").is_file():
        pytest.skip("shipped control profiles not present")
    path = write(scenario_dir, MINIMAL.replace("controls: [allow, {name: inline, model: static_iam}]",
                                               "controls: [none, static_iam]"))
    assert [c.name for c in load_scenario(path).controls] == ["none", "static_iam"]


def test_default_controls_are_the_shipped_ones(scenario_dir):
    from simharness.spec import DEFAULT_CONTROLS

    if not all((data_dir("controls") / f"{n}.yaml").is_file() for n in DEFAULT_CONTROLS):
        pytest.skip("shipped control profiles not present")
    path = write(scenario_dir, MINIMAL.replace("controls: [allow, {name: inline, model: static_iam}]\n", ""))
    assert tuple(c.name for c in load_scenario(path).controls) == DEFAULT_CONTROLS


def test_empirical_samples_from_csv(scenario_dir):
    (scenario_dir / "lat.csv").write_text("latency_s\n0.1\n0.25\n\n3\n")
    path = write(scenario_dir, MINIMAL + "timing:\n  step: {dist: empirical, samples: lat.csv}\n")
    assert load_scenario(path).timing.step.samples == [0.1, 0.25, 3.0]


def test_empirical_csv_problems(scenario_dir):
    (scenario_dir / "bad.csv").write_text("s\n0.1\noops\n-2\n")
    text = MINIMAL + ("timing:\n  step: {dist: empirical, samples: bad.csv}\n"
                      "  think: {dist: empirical, samples: missing.csv}\n")
    path = write(scenario_dir, text)
    problems = problems_of(path)
    csv = [p for p in problems if p.file.endswith("bad.csv")]
    assert [(p.line, p.path) for p in csv] == [(3, "timing.step.samples"), (4, "timing.step.samples")]
    missing = only([p for p in problems if "missing.csv" in p.message])
    assert missing.file == str(path) and missing.line == line_of(path, "missing.csv")


def test_merge_keys_and_anchors(scenario_dir):
    text = MINIMAL.replace(
        "  - {name: wiki, sensitivity: internal, destination: wiki.example}",
        "  - &wiki {name: wiki, sensitivity: internal, destination: wiki.example}\n"
        "  - {<<: *wiki, name: wiki2}")
    spec = load_scenario(write(scenario_dir, text))
    assert spec.resource("wiki2").destination == "wiki.example"


def test_dump_loads_back_equal(scenario_dir):
    (scenario_dir / "lat.csv").write_text("0.1\n0.2\n")
    text = MINIMAL + ("timing:\n  step: {dist: empirical, samples: lat.csv}\n  think: 1s\n"
                      "misuse: {rate: 0.05, params: {theft_delay: inf}}\n")
    spec = load_scenario(write(scenario_dir, text), overrides=["controls.allow.pdp.servers=2"])
    again = load_scenario(write(scenario_dir, dump_scenario(spec), "dumped.yaml"))
    assert again == spec
    assert scenario_sha256(again) == scenario_sha256(spec)
    assert scenario_sha256(load_scenario(scenario_dir / "s.yaml")) != scenario_sha256(spec)


def test_load_yaml_marks(tmp_path):
    path = write(tmp_path, """\
        a: 1
        b:
          - x
          - {c: 2, d: [3, 4]}
        """)
    data, marks = load_yaml(path)
    assert data == {"a": 1, "b": ["x", {"c": 2, "d": [3, 4]}]}
    assert marks[("a",)] == (1, 1)
    assert marks[("b",)] == (2, 1)
    assert marks[("b", 0)] == (3, 5)
    assert marks[("b", 1)] == (4, 5)
    assert marks[("b", 1, "d")] == (4, 12)
    assert marks[("b", 1, "d", 1)] == (4, 19)


def test_aliases_do_not_share_data(tmp_path):
    data, _ = load_yaml(write(tmp_path, "a: &x {k: [1]}\nb: *x\n"))
    data["b"]["k"].append(2)
    assert data["a"] == {"k": [1]}


def test_problem_format():
    assert str(Problem("f.yaml", 3, 7, "agents.0.role", "bad")) == "f.yaml:3:7: agents.0.role: bad"
    assert str(Problem("f.yaml", None, None, "", "bad")) == "f.yaml: bad"
    assert str(Problem("f.csv", 4, None, "x", "bad")) == "f.csv:4: x: bad"


def test_scenario_error_sorts_and_pickles():
    err = ScenarioError([Problem("f", 9, 1, "", "late"), Problem("f", 2, 5, "", "early"),
                         Problem("f", 2, 5, "", "early")])
    assert [p.message for p in err.problems] == ["early", "late"]
    again = pickle.loads(pickle.dumps(err))
    assert again.problems == err.problems and str(again) == str(err)


def test_data_dir_and_find_scenario(tmp_path):
    assert data_dir("controls").name == "controls"
    path = write(tmp_path, MINIMAL)
    assert find_scenario(path) == path
    if (data_dir("scenarios") / "baseline.yaml").is_file():
        assert find_scenario("baseline") == data_dir("scenarios") / "baseline.yaml"
        assert "did you mean 'baseline'?" in only(problems_of(Path("baselin"))).message
    with pytest.raises(ScenarioError):
        find_scenario(tmp_path / "nope.yaml")


def test_validate_files_collects_every_file(scenario_dir):
    good = write(scenario_dir, MINIMAL)
    bad = write(scenario_dir, MINIMAL.replace("horizon:", "horizn:"), "bad.yaml")
    profile = write(scenario_dir, "name: prof\nmodel: none\nparms: {}\n", "prof.yaml")
    problems = validate_files([good, bad, profile])
    assert [(Path(p.file).name, p.path) for p in problems] == [("bad.yaml", "horizn"),
                                                               ("prof.yaml", "parms")]


# --------------------------------------------------------------------------- broken input


def test_yaml_syntax_error(tmp_path):
    path = write(tmp_path, "schema_version: 1\nname: [unclosed\nhorizon: 1h\n")
    p = only(problems_of(path))
    assert p.line is not None and p.col is not None
    assert "invalid YAML" in p.message


def test_unknown_key_did_you_mean(scenario_dir):
    path = write(scenario_dir, MINIMAL.replace("horizon:", "horizn:"))
    p = only(problems_of(path))
    assert (p.line, p.col, p.path) == (line_of(path, "horizn"), 1, "horizn")
    assert p.message == "unknown key 'horizn' (did you mean 'horizon'?)"


def test_unknown_nested_key_did_you_mean(scenario_dir):
    path = write(scenario_dir, MINIMAL.replace("count: 3", "cuont: 3"))
    p = only(problems_of(path))
    assert p.path == "agents.0.cuont" and "did you mean 'count'?" in p.message
    assert p.line == line_of(path, "cuont")


def test_wrong_type(scenario_dir):
    path = write(scenario_dir, MINIMAL.replace("replications: 2", "replications: many"))
    p = only(problems_of(path))
    assert (p.path, p.line) == ("replications", line_of(path, "replications"))
    assert p.message == "expected an integer, got 'many'"


def test_unknown_tool_in_step(scenario_dir):
    path = write(scenario_dir, MINIMAL.replace("{tool: docs,", "{tool: doc,"))
    p = only(problems_of(path))
    assert p.path == "tasks.answer.steps.1.tool"
    assert p.line == line_of(path, "{tool: doc,")
    assert "did you mean 'docs'?" in p.message


def test_duplicate_key(scenario_dir):
    path = write(scenario_dir, MINIMAL.replace("horizon: 1h\n", "horizon: 1h\nname: again\n"))
    p = only(problems_of(path))
    assert (p.line, p.col, p.path) == (line_of(path, "again"), 1, "name")
    assert "duplicate key 'name'" in p.message


def test_python_tag_executes_nothing(scenario_dir):
    marker = scenario_dir / "pwned"
    path = write(scenario_dir, MINIMAL.replace(
        "replications: 2", f'replications: !!python/object/apply:os.system ["touch {marker}"]'))
    p = only(problems_of(path))
    assert not marker.exists()
    assert (p.line, p.col, p.path) == (line_of(path, "os.system"), 15, "replications")
    assert "!!python/object/apply:os.system" in p.message and "not allowed" in p.message


def test_unknown_local_tag(tmp_path):
    p = only(problems_of(write(tmp_path, "schema_version: 1\nagents: !include other.yaml\n")))
    assert (p.line, p.path) == (2, "agents") and "'!include'" in p.message


@pytest.mark.parametrize("text", ["", "\n\n# only a comment\n", "---\n"])
def test_empty_file(tmp_path, text):
    p = only(problems_of(write(tmp_path, text)))
    assert p.message == "file is empty: expected a scenario mapping"


def test_top_level_list(tmp_path):
    p = only(problems_of(write(tmp_path, "- schema_version: 1\n- name: x\n")))
    assert p.message.startswith("expected a mapping at top level") and p.line == 1


def test_unsupported_schema_version(scenario_dir):
    path = write(scenario_dir, MINIMAL.replace("schema_version: 1", "schema_version: 2"))
    p = only(problems_of(path))
    assert (p.path, p.line) == ("schema_version", 1)
    assert "schema_version 2 is not supported" in p.message and "reads 1" in p.message


def test_unknown_control_profile(scenario_dir):
    path = write(scenario_dir, MINIMAL.replace("controls: [allow,", "controls: [alow,"))
    p = only(problems_of(path))
    assert (p.path, p.line) == ("controls.0", line_of(path, "controls:"))
    assert "unknown control profile 'alow' (did you mean 'allow'?)" in p.message


def test_broken_profile_is_reported_in_its_file(scenario_dir):
    (scenario_dir / "controls" / "allow.yaml").write_text(ALLOW_PROFILE + "parms: {}\n")
    p = only(problems_of(write(scenario_dir, MINIMAL)))
    assert p.file.endswith("allow.yaml") and (p.line, p.path) == (5, "parms")
    assert "did you mean 'params'?" in p.message


def test_profile_name_must_match_its_file(scenario_dir):
    (scenario_dir / "controls" / "allow.yaml").write_text(ALLOW_PROFILE.replace("name: allow", "name: other"))
    p = only(problems_of(write(scenario_dir, MINIMAL)))
    assert p.file.endswith("allow.yaml") and p.path == "name"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("misuse.rat=0.1", "unknown key 'rat' (did you mean 'rate'?)"),
        ("horizn=1h", "did you mean 'horizon'?"),
        ("agents.suport.count=2", "unknown item 'suport' (did you mean 'support'?)"),
        ("agents.5.count=2", "index 5 is out of range"),
        ("name.first=x", "not a mapping or a list"),
        ("no_equals_sign", "expected dotted.path=value"),
        ("misuse..rate=1", "empty segment"),
        ("misuse.rate=[1, 2", "cannot parse value"),
        ("controls.alow.pdp.servers=2", "unknown control 'alow' (did you mean 'allow'?)"),
        ("controls.allow=2", "expected controls.<control>.<path in its params>=value"),
        ("controls.allow.pdp.rtt.x=1", "pdp.rtt is '1ms', not a mapping"),
    ],
)
def test_bad_set(scenario_dir, override, message):
    p = only(problems_of(write(scenario_dir, MINIMAL), overrides=[override]))
    assert p.file == "--set" and p.path == override.partition("=")[0].strip()
    assert message in p.message


def test_bad_value_from_set_is_blamed_on_set(scenario_dir):
    p = only(problems_of(write(scenario_dir, MINIMAL), overrides=["misuse.rate=2"]))
    assert (p.file, p.path, p.line) == ("--set", "misuse.rate", None)


def test_many_problems_in_one_pass(scenario_dir):
    text = (MINIMAL.replace("horizon: 1h", "horizn: 1h")
            .replace("replications: 2", "replications: many")
            .replace("count: 3", "count: 0")
            .replace("task_rate: 6/h", "task_rate: 6 per hour")
            .replace("{name: inline, model: static_iam}", "{name: inline, modle: none}")
            + "timing:\n  think: {dist: gama, mean: 2s}\n  step: {dist: empirical, samples: 5}\n")
    path = write(scenario_dir, text)
    problems = problems_of(path, overrides=["misuse.rat=1"])
    assert [p.path for p in problems] == [
        "misuse.rat", "horizn", "replications", "agents.0.count", "agents.0.task_rate",
        "controls.1.model", "controls.1.modle", "timing.think.dist", "timing.step.samples"]
    scenario = [p for p in problems if p.file == str(path)]
    assert [p.line for p in scenario] == sorted(p.line for p in scenario)
    by_path = {p.path: p.message for p in problems}
    assert "did you mean 'exponential'" not in by_path["timing.think.dist"]
    assert "(did you mean 'gamma'?); expected one of: constant, exponential, lognormal, gamma" in (
        by_path["timing.think.dist"])
    assert by_path["timing.step.samples"] == "expected a valid list or a valid string, got 5"


def test_missing_required_keys(tmp_path):
    problems = problems_of(write(tmp_path, "schema_version: 1\nname: x\ncontrols: [{name: n, model: none}]\n"))
    assert {p.path for p in problems} == {"resources", "tools", "agents", "tasks"}
    assert all(p.message == "required key is missing" for p in problems)


def test_missing_file(tmp_path):
    p = only(problems_of(tmp_path / "nope.yaml"))
    assert "no such file" in p.message


def test_recursive_alias(tmp_path):
    p = only(problems_of(write(tmp_path, "schema_version: 1\nname: &a [*a]\n")))
    assert "recursive" in p.message


def test_alias_bomb_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "MAX_NODES", 10_000)
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    p = only(problems_of(write(tmp_path, "\n".join(lines) + "\n")))
    assert "after expanding aliases" in p.message


@pytest.mark.parametrize("tag", ["!!map", "!!seq", "!!set", "!!omap"])
def test_collection_tagged_key(tmp_path, tag):
    p = only(problems_of(write(tmp_path, f"schema_version: 1\n{tag} x: 1\n")))
    assert p.line == 2


def test_top_level_set_is_not_a_mapping(tmp_path):
    p = only(problems_of(write(tmp_path, "!!set\nschema_version: 1\n")))
    assert p.message.startswith("expected a mapping at top level")


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1f"])
def test_forbidden_character_is_located(scenario_dir, char):
    path = write(scenario_dir, MINIMAL.replace("horizon: 1h", "horizon: 1h" + char))
    p = only(problems_of(path))
    assert (p.line, p.col) == (3, 12) and "<byte string>" not in p.message


def test_invalid_utf8_is_located(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"schema_version: 1\nname: caf\xe9\n")
    p = only(problems_of(path))
    assert (p.line, p.col) == (2, 10) and "utf-8" in p.message


@pytest.mark.parametrize("text", ["description: " + "[" * 500 + "]" * 500 + "\n",
                                  "a: &a [[[[[[[[[[1]]]]]]]]]]\n"
                                  + "".join(f"a{i}: &a{i} [[[[[[[[[[*a{i - 1 if i else ''}]]]]]]]]]]\n"
                                            for i in range(12))])
def test_too_deep_nesting_is_located(tmp_path, text):
    p = only(problems_of(write(tmp_path, "schema_version: 1\n" + text)))
    assert p.line is not None and "nested more than" in p.message


def test_bad_standard_tag_value(tmp_path):
    p = only(problems_of(write(tmp_path, "schema_version: !!int abc\n")))
    assert p.line == 1 and "!!int" in p.message


# A valid scenario cut, spliced and salted with YAML debris must fail only with ScenarioError.
_DEBRIS = [":", "- ", "[", "]", "{", "}", "&a ", "*a", "<<: *a", "!!python/name:os.system ", "\t",
           "'", '"', "\x00", "~", "yes", "-1", "1.0e+999", "nan", "\n  ", ": &b [*b]", "!!int x",
           "? [a]\n: 1\n", "%YAML 1.1\n", "---\n", "controls: 5\n", "dist: beta"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.tuples(st.integers(0, len(MINIMAL)), st.integers(0, 12),
                               st.sampled_from(_DEBRIS)), min_size=1, max_size=3))
def test_mangled_scenarios_raise_only_scenario_error(scenario_dir, cuts):
    text = MINIMAL
    for at, drop, debris in cuts:
        text = text[:at] + debris + text[at + drop:]
    path = scenario_dir / "fuzz.yaml"
    path.write_text(text)
    try:
        load_scenario(path)
    except ScenarioError as e:
        assert e.problems and all(isinstance(p, Problem) for p in e.problems)


def test_selection_without_controls_key_loads_only_the_selection(scenario_dir):
    text = MINIMAL.replace("controls: [allow, {name: inline, model: static_iam}]\n", "")
    spec = load_scenario(write(scenario_dir, text), controls=["allow"])
    assert [c.name for c in spec.controls] == ["allow"]


def test_parsed_files_are_cached_by_content_and_handed_out_as_copies(tmp_path):
    from simharness import loader

    path = tmp_path / "s.yaml"
    path.write_text("a: {b: [1, 2]}\nc: x\n")
    first, marks = loader.load_yaml(path)
    first["a"]["b"].append(3)  # what --set does to its copy
    marks.clear()
    again, marks_again = loader.load_yaml(path)
    assert again == {"a": {"b": [1, 2]}, "c": "x"} and marks_again[("c",)] == (2, 1)
    path.write_text("a: {b: [9]}\n")  # new content: parsed again, never the stale result
    assert loader.load_yaml(path)[0] == {"a": {"b": [9]}}


def test_validate_reports_schema_and_reference_problems_in_one_pass(tmp_path):
    from simharness.loader import validate_files

    path = tmp_path / "bad.yaml"
    path.write_text(
        "schema_version: 1\nname: bad\nhorizon: 8x\nresources:\n"
        "- {name: crm, sensitivity: secret, destination: x}\n"
        "- {name: wiki, sensitivity: internal}\n"
        "tools:\n- {name: t, actions: [read, fly], resources: [crm, nope]}\n"
        "- {name: w, actions: [read], resources: [wiki]}\n"
        "agents:\n- {name: a, count: 1, role: {t: [read]}, task_rate: 2/h, tasks: {x: 1}}\n"
        "tasks:\n  x: {steps: [{tool: t, action: read, resource: crm}, "
        "{tool: u, action: read, resource: crm}]}\ncontrols: [none]\n")
    got = {(p.line, p.path) for p in validate_files([path])}
    assert got == {(3, "horizon"), (6, "resources.1.destination"),  # the schema's
                   (5, "resources.0.sensitivity"), (8, "tools.0.actions.1"),  # references
                   (8, "tools.0.resources.1"), (13, "tasks.x.steps.1.tool")}
    # Nothing is reported about `wiki` itself being unknown: it was set aside for its own error.
