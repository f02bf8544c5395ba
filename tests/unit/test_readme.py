"""The README's sample output is what `simharness run baseline` prints."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("readme_sample", ROOT / ".ci" / "readme_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_sample_output_is_a_real_run():
    tool = _tool()
    shown = tool.block((ROOT / "README.md").read_text())
    assert shown == tool.sample(), "README sample output is stale: python .ci/readme_sample.py"
