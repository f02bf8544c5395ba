"""results: run keys, atomic writes, run files, byte-stable tables, manifest, load round-trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from simharness import results as R


def _run(control: str, replication: int, pdp: float, rng: np.random.Generator) -> dict:
    key = R.run_key("ab" * 32, control, {"ttl": "5m"}, replication, 100 + replication,
                    {"pdp_ms": pdp}, "test")
    legit = int(rng.integers(50, 100))
    return {
        "key": key,
        "row": {
            "scenario": "baseline", "control": control, "replication": replication,
            "seed": 100 + replication, "pdp_ms": pdp,
            "exposure": float(rng.normal(1000, 100)) / 3.0,
            "tasks": 10, "legit_actions": legit, "legit_denied": int(rng.integers(0, 5)),
            "decision_p99_ms": float("nan") if control == "none" else pdp * 1.1,
            "zz_extra": 1, "aa_extra": 0.1,
        },
        "misuse": [
            {"kind": "exfiltration", "injected": 2, "prevented": 1, "detected": 0, "missed": 1,
             "damage": 0.7},
            {"kind": "destructive_action", "injected": 1, "prevented": 1, "detected": 0,
             "missed": 0, "damage": 0.0},
        ],
        "timeline": {"t": [0.0, 60.0, 120.0], "exposure": [0.0, float(rng.random()), 2 / 3]},
        "latency_ms": {"q": np.array([0.5, 0.99]), "ms": [np.float64(1.25), 1 / 7]},
    }


def _populate(tmp_path, order=None):
    rng = np.random.default_rng(0)
    runs = [_run(c, r, p, rng) for p in (5.0, 50.0) for c in ("none", "static_iam", "jit")
            for r in range(3)]
    rd = R.ResultsDir(tmp_path)
    for i in order if order is not None else range(len(runs)):
        rd.save_run(runs[i])
    return rd, [r["key"] for r in runs], runs


def test_run_key_canonical():
    a = R.run_key("s", "jit", {"b": 1, "a": [1.5, 2]}, 0, 7, {"x": 1}, "v")
    b = R.run_key("s", "jit", {"a": [1.5, 2], "b": 1}, np.int64(0), 7, {"x": 1}, "v")
    assert a == b and len(a) == 64 and int(a, 16) >= 0
    assert a != R.run_key("s", "jit", {"b": 1, "a": [1.5, 2]}, 1, 7, {"x": 1}, "v")
    assert a != R.run_key("s", "jit", {"b": 1, "a": [1.5, 2]}, 0, 7, {"x": 1}, "w")


def test_code_version():
    v = R.code_version()
    assert "+" in v and v == R.code_version()


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    R.atomic_write_text(target, "one\n")
    R.atomic_write_text(target, "two\n")
    R.atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert target.read_text() == "two\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["b.bin", "f.txt", "sub"]


def test_atomic_write_failure_cleans_up(tmp_path, monkeypatch):
    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(R.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        R.atomic_write_text(tmp_path / "f.txt", "x")
    assert list(tmp_path.iterdir()) == []


def test_save_has_load(tmp_path):
    rd, keys, runs = _populate(tmp_path)
    assert all(rd.has(k) for k in keys)
    assert not rd.has("0" * 64)
    loaded = rd.load_run(keys[4])
    assert loaded["row"]["exposure"] == runs[4]["row"]["exposure"]  # float round-trip
    assert math.isnan(rd.load_runs([keys[0]])[0]["row"]["decision_p99_ms"])
    text = (rd.runs_dir / f"{keys[4]}.json").read_text()
    assert text.index('"key"') < text.index('"latency_ms"') < text.index('"row"')
    with pytest.raises(ValueError):
        rd.has("../evil")
    with pytest.raises(FileNotFoundError, match="did not finish"):
        rd.load_run("f" * 64)


def test_tables_are_byte_identical_whatever_the_save_order(tmp_path):
    rd1, keys, _ = _populate(tmp_path / "a")
    rd2, _, _ = _populate(tmp_path / "b", order=list(reversed(range(len(keys)))))
    rd1.write_tables(keys, ["pdp_ms"])
    rd2.write_tables(keys, ["pdp_ms"])
    for name in R.TABLES:
        b1 = (tmp_path / "a" / f"{name}.csv").read_bytes()
        assert b1 == (tmp_path / "b" / f"{name}.csv").read_bytes()
        assert b"\r\n" not in b1
    rd1.write_tables(keys, ["pdp_ms"])  # rewriting gives the same bytes
    assert (tmp_path / "a" / "summary.csv").read_bytes() == (
        tmp_path / "b" / "summary.csv").read_bytes()
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.endswith(".tmp")]


def test_table_layout(tmp_path):
    rd, keys, _ = _populate(tmp_path)
    res = rd.write_tables(keys, ["pdp_ms"])
    assert list(res.summary.columns) == [
        "scenario", "control", "replication", "seed", "pdp_ms", "tasks", "legit_actions",
        "legit_denied", "exposure", "decision_p99_ms", "aa_extra", "zz_extra"]
    assert len(res.summary) == 18 and list(res.summary.control[:4]) == ["none"] * 3 + ["static_iam"]
    assert list(res.aggregate.columns[:4]) == ["pdp_ms", "control", "replications",
                                               "paired_reference"]
    assert len(res.aggregate) == 6 and (res.aggregate.paired_reference == "static_iam").all()
    assert list(res.misuse.columns[:5]) == ["control", "replication", "pdp_ms", "kind",
                                            "standards"]
    assert list(res.misuse.kind[:2]) == ["exfiltration", "destructive_action"]
    assert list(res.timeline.columns) == ["control", "replication", "pdp_ms", "t", "exposure"]
    assert len(res.timeline) == 18 * 3
    assert list(res.latency.columns) == ["control", "replication", "pdp_ms", "q", "ms"]
    assert res.latency.ms[1] == 1 / 7


def test_load_results_round_trip(tmp_path):
    rd, keys, _ = _populate(tmp_path)
    built = rd.write_tables(keys, ["pdp_ms"])
    manifest = {**R.manifest_base(), "root_seed": 7, "runs": {k: "done" for k in keys}}
    rd.write_manifest(manifest)
    text = rd.manifest_path.read_text()
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"
    loaded = R.load_results(tmp_path)
    assert loaded.manifest == rd.read_manifest() == json.loads(json.dumps(manifest))
    for name in R.TABLES:
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(built, name),
                                      check_dtype=False, check_exact=True)


def test_load_results_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="simharness run"):
        R.load_results(tmp_path / "nowhere")
    (tmp_path / "summary.csv").write_text("scenario,control\nbaseline,none\n")
    res = R.load_results(tmp_path)
    assert res.aggregate.empty and res.manifest == {}
    assert list(res.summary.control) == ["none"]


def test_empty_tables(tmp_path):
    rd = R.ResultsDir(tmp_path)
    res = rd.write_tables([], ["pdp_ms"])
    assert res.summary.empty
    assert (tmp_path / "misuse.csv").read_text().startswith("control,replication,pdp_ms,kind")


def test_manifest_base_fields():
    m = R.manifest_base()
    for k in ("simharness", "python", "numpy", "pandas", "simpy", "platform", "git_commit",
              "code_version"):
        assert k in m
