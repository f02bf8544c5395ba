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
