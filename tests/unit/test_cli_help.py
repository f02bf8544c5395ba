"""-h and --version."""

from __future__ import annotations


def test_short_help_and_version_on_every_command():
    from typer.testing import CliRunner

    from simharness import __version__
    from simharness.cli import app

    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"simharness {__version__}"
    for cmd in (["-h"], ["run", "-h"], ["sweep", "-h"], ["bound", "-h"], ["import", "-h"],
                ["import", "agentdojo", "-h"], ["budget", "-h"], ["diff-policy", "-h"]):
        r = CliRunner().invoke(app, cmd)
        assert r.exit_code == 0 and "Usage" in r.output, cmd
