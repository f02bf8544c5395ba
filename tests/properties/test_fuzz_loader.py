"""Fuzzed scenario files (issue 10): mutated copies of shipped and compact scenarios.

Each example takes a seed file, applies 1-4 random mutations (delete, duplicate, swap or
re-indent lines; replace a value with a random token; insert a tag, an anchor or alias, or
unicode; truncate) and loads the result from a real file with `load_scenario`:
- nothing but `ScenarioError` escapes;
- every problem names the file and has line:col or a non-empty field path;
- every accepted file survives load -> dump_scenario -> load to an equal spec.

CI runs 1,000 files (derandomized, so every run sees the same 1,000); `-m slow` runs 5,000
with the shipped baseline as the only seed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from simharness.loader import ScenarioError, dump_scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]
BASELINE = (ROOT / "scenarios" / "baseline.yaml").read_text()
SMALL = (Path(__file__).with_name("fuzz_seed_small.yaml")).read_text()

TOKENS = [
    "", "0", "-1", "1e308", "-0.0", ".inf", "-.inf", ".nan", "null", "~", "[]", "{}", "[1, 2]",
    "{a: 1}", "yes", "no", "true", "abc", "'x'", '"\\u00e9"', "999999999999999999999999",
    "1/0", "5/h", "0/h", "-3s", "10 parsecs", "250ms", "8h", "1d", "0.5/s", "2s", "1e-9",
    "!!python/object/apply:os.system ['echo hi']", "!!python/name:os.system", "!!binary ZZZ",
    "!!int abc", "!!float x", "!!timestamp 2020-99-99", "!!set {a, b}", "!!omap [a: 1]",
    "!custom 1", "&a 1", "*a", "*undefined", "<<: *a", "{dist: exponential}",
    "{dist: lognormal, p50: 1s, p99: 10ms}", "{dist: beta, a: -1, b: 0}", "{dist: nope}",
    "{dist: empirical, samples: []}", "{dist: empirical, samples: missing.csv}",
    "é", "日本語", "🙂", "\u202e", "\ufeff", "\u2028", "\t", "- x", ": :", "? x", "|", ">",
    "%YAML 1.1", "---", "...", "#", "'unterminated", '"unterminated', "[unclosed", "{unclosed",
    "support", "billing", "crm", "ledger", "crm_api", "read", "answer_ticket", "per_action_policy",
    "static_iam", "jit_per_task", "none", "first_party", "third_party", "shared", "per_task",
]

INSERTS = [
    "!!python/object:os.system", "!!str", "!!map ", "!!seq ", "!!set ", "!!int ", "!tag", "&anchor ", "*anchor", "<<: ",
    "é", "🙂", "\u0000", "\u0007", "\x85", "\ufeff", "\u2029", "\r", "\t", ":", "- ", "{", "}",
    "[", "]", ",", "#", "'", '"', "\\", "%", "@", "`", "? ", "&a", "*a",
]

SEEDS = {"baseline": BASELINE, "small": SMALL}
VALUE_RE = re.compile(r"(:\s+)([^\s#{\[][^#,}\]\n]*)")


@st.composite
def mutation(draw, text: str) -> str:
    lines = text.split("\n")
    n = len(lines)
    op = draw(st.sampled_from(["delete", "duplicate", "swap", "value", "insert", "truncate",
                               "indent", "key", "unicode", "line"]))
    i = draw(st.integers(0, n - 1))
    if op == "delete":
        del lines[i]
    elif op == "duplicate":
        lines.insert(i, lines[i])
    elif op == "swap":
        j = draw(st.integers(0, n - 1))
        lines[i], lines[j] = lines[j], lines[i]
    elif op == "value":
        matches = list(VALUE_RE.finditer(lines[i]))
        token = draw(st.sampled_from(TOKENS))
        if matches:
            m = matches[draw(st.integers(0, len(matches) - 1))]
            lines[i] = lines[i][:m.start(2)] + token + lines[i][m.end(2):]
        else:
            lines[i] += token
    elif op == "insert":
        line = lines[i]
        k = draw(st.integers(0, len(line)))
        lines[i] = line[:k] + draw(st.sampled_from(INSERTS)) + line[k:]
    elif op == "truncate":
        cut = draw(st.integers(0, len(text)))
        return text[:cut]
    elif op == "indent":
        line = lines[i]
        if draw(st.booleans()):
            lines[i] = " " * draw(st.integers(1, 4)) + line
        else:
            lines[i] = line[draw(st.integers(1, 4)):] if line.startswith(" ") else line
    elif op == "key":
        line = lines[i]
        k = line.find(":")
        if k > 0:
            name = draw(st.sampled_from(["nmae", "count", "role", "x", "horizon", "tasks",
                                         "model", "params", "schema_version", "steps", "é"]))
            stripped = line[:k].lstrip(" -{")
            lines[i] = line[:k - len(stripped)] + name + line[k:]
    elif op == "unicode":
        line = lines[i]
        k = draw(st.integers(0, len(line)))
        lines[i] = line[:k] + draw(st.text(min_size=1, max_size=3)) + line[k:]
    else:  # a whole new line of random text
        lines.insert(i, draw(st.text(st.characters(codec="utf-8"), max_size=20)))
    return "\n".join(lines)


@st.composite
def mutated(draw, seeds: tuple[str, ...]) -> tuple[str, str]:
    name = draw(st.sampled_from(seeds))
    text = SEEDS[name]
    for _ in range(draw(st.integers(1, 4))):
        text = draw(mutation(text))
    return name, text


STATS = {"files": 0, "accepted": 0, "rejected": 0}


def check_file(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    STATS["files"] += 1
    try:
        spec = load_scenario(path)
    except ScenarioError as e:
        STATS["rejected"] += 1
        assert e.problems, "a ScenarioError without problems"
        for p in e.problems:
            assert p.file, p
            # The scenario itself, or a control profile it names (a file that exists).
            assert p.file == str(path) or Path(p.file).is_file(), p
            located = (p.line is not None and p.col is not None) or bool(p.path)
            assert located, f"problem without line:col or field path: {p!s}"
            assert p.message and "Traceback" not in p.message
        return
    STATS["accepted"] += 1
    dumped = path.with_suffix(".dump.yaml")
    dumped.write_text(dump_scenario(spec), encoding="utf-8")
    again = load_scenario(dumped)
    assert again == spec


COMMON = dict(derandomize=True, deadline=None, database=None, phases=[Phase.generate, Phase.shrink],
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.filter_too_much, HealthCheck.data_too_large])


@settings(max_examples=1000, **COMMON)
@given(case=mutated(("small", "small", "small", "baseline")))
def test_fuzzed_scenario_files(case, tmp_path):
    check_file(tmp_path / "fuzz.yaml", case[1])


@pytest.mark.slow
@settings(max_examples=5000, **COMMON)
@given(case=mutated(("baseline",)))
def test_fuzzed_baseline_files_nightly(case, tmp_path):
    check_file(tmp_path / "fuzz.yaml", case[1])


def test_fuzz_counts_reported():
    # Runs after the fuzz test in file order: the figures for the note (-s shows them).
    print("fuzzed files:", STATS)
    if STATS["files"]:
        assert STATS["files"] >= 1000
        assert STATS["accepted"] > 0 and STATS["rejected"] > 0


@pytest.mark.parametrize("char", ["\x00", "\x1f", "\x07"])
def test_unacceptable_character_has_line_col(tmp_path, char):
    path = tmp_path / "s.yaml"
    path.write_text(SMALL.replace("horizon: 1h", "horizon: 1h" + char))
    with pytest.raises(ScenarioError) as e:
        load_scenario(path)
    (p,) = e.value.problems
    assert (p.line, p.col) == (4, 12)
    assert "<byte string>" not in p.message  # names a buffer, not the file


def test_too_deep_nesting_has_a_location(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SMALL + "description: " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(ScenarioError) as e:
        load_scenario(path)
    assert all(p.line is not None or p.path for p in e.value.problems)


@pytest.mark.parametrize("tag", ["!!map", "!!seq", "!!set", "!!omap"])
def test_collection_tagged_key_is_a_scenario_error(tmp_path, tag):
    path = tmp_path / "s.yaml"
    path.write_text(f"schema_version: 1\n{tag} x: 1\n")
    with pytest.raises(ScenarioError):
        load_scenario(path)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.run([sys.executable, "-m", "simharness.cli", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)


CLI_CASES = {
    "duplicate_key": SMALL.replace("seed: 3\n", "seed: 3\nseed: 4\n"),
    "python_tag": SMALL.replace("horizon: 1h", "horizon: !!python/object/apply:os.system ['true']"),
    "bad_indent": SMALL.replace("    count: 2", "  count: 2"),
    "bad_values": SMALL.replace("count: 2", "count: -1").replace("6/h", "6 per hour"),
    "unknown_model": SMALL.replace("model: none", "model: nnoe"),
    "truncated": SMALL[: len(SMALL) // 2] + "{",
    "unicode": SMALL.replace("name: fuzz-small", "name: \u202e\U0001f642"),
}


def test_validate_cli_on_mutated_files(tmp_path):
    from typer.testing import CliRunner

    from simharness.cli import app

    files = []
    for name, text in CLI_CASES.items():
        f = tmp_path / f"{name}.yaml"
        f.write_text(text, encoding="utf-8")
        files.append(f)
    runner = CliRunner()
    for f in files:  # in-process, one file per call: each must be rejected on its own
        r = runner.invoke(app, ["validate", str(f)])
        assert r.exit_code == 2, (f.name, r.exit_code, r.output, r.exception)
        assert isinstance(r.exception, SystemExit), r.exception
        assert "Traceback" not in r.output and str(f) in r.output, r.output
    # and once as a real process with all files: exit 2, no traceback, every file named
    r = _cli("validate", *map(str, files))
    out = r.stdout + r.stderr
    assert r.returncode == 2 and "Traceback" not in out, out
    for f in files:
        assert str(f) in out, (f, out)


def test_validate_cli_accepts_the_seeds(tmp_path):
    f = tmp_path / "small.yaml"
    f.write_text(SMALL)
    r = _cli("validate", str(f), str(ROOT / "scenarios" / "baseline.yaml"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_validate_cli_collection_tagged_key(tmp_path):
    f = tmp_path / "k.yaml"
    f.write_text("schema_version: 1\n!!map x: 1\n")
    r = _cli("validate", str(f))
    assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr


def test_set_tagged_top_level_is_a_scenario_error(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("!!set\n" + SMALL)
    with pytest.raises(ScenarioError):
        load_scenario(path)
