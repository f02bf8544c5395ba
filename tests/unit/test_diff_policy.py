"""diff-policy: a loosened rule flips exactly the requests it should, in every engine; the CI
exit codes."""

from __future__ import annotations

import importlib.util
import re
from collections import deque
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simharness.bench import record_requests
from simharness.cli import app
from simharness.controls.base import World, make
from simharness.diff_policy import DENY_TO_ALLOW, diff_policy
from simharness.loader import data_dir, load_scenario

POLICIES = data_dir("controls") / "policies"
FILES = {"rules": "agent_rules.yaml", "cedar": "agent.cedar", "rego": "agent.rego"}
EXTRA = {"cedar": "cedarpy", "rego": "regopy"}
SCENARIO = ["horizon=3h"]


def without_recipient_rule(engine: str, tmp: Path) -> Path:
    """The shipped policy with its forbid-unknown-recipient rule cut out."""
    text = (POLICIES / FILES[engine]).read_text()
    if engine == "rules":
        text = re.sub(r"  - id: forbid-unknown-recipient\n(    .*\n|      .*\n)*", "", text)
    elif engine == "cedar":
        text = re.sub(r'@id\("forbid-unknown-recipient"\)[^;]*;', "", text)
    else:
        text = re.sub(r'deny contains "forbid-unknown-recipient".*\n', "", text)
    assert "forbid-unknown-recipient" not in text
    out = tmp / f"new{Path(FILES[engine]).suffix}"
    out.write_text(text)
    return out


def only_the_recipient_rule_denies(requests) -> int:
    """Requests the shipped policy denies only for an undeclared recipient, by brute force over
    its rules (not by any engine): the permit holds, no other forbid does."""
    burst: dict[str, deque] = {}
    n = 0
    for r in requests:
        window = burst.setdefault(r.identity, deque())
        while window and window[0] <= r.time - 10.0:
            window.popleft()
        over = len(window) > 20
        window.append(r.time)
        c = r.credential
        permit = r.attested and r.entitled and r.in_scope and r.task_active
        others = (not r.resource.approved or (r.resource.external and r.bytes_out > 1_000_000)
                  or (r.chain_depth >= 1 and not r.origin_permits and not r.in_scope)
                  or (c is not None and c.holder != r.identity) or over)
        n += permit and not others and "recipient" in r.args and "recipient" in r.args_unknown
    return n


def _engines():
    for engine in FILES:
        module = EXTRA.get(engine)
        missing = module is not None and importlib.util.find_spec(module) is None
        yield pytest.param(engine, marks=pytest.mark.skipif(
            missing, reason=f"needs the {engine} extra (pip install 'simharness[{engine}]')"))


@pytest.mark.parametrize("engine", list(_engines()))
def test_loosening_one_rule_flips_exactly_its_requests(engine, tmp_path):
    old = POLICIES / FILES[engine]
    new = without_recipient_rule(engine, tmp_path)
    diff = diff_policy(old, new, "baseline", overrides=SCENARIO, outcomes=False)
    spec = load_scenario("baseline", SCENARIO, ["per_action_policy"])
    entry = spec.controls[0]
    control = make("old", "per_action_policy", {**entry.params, "engine": engine,
                                                "policy": str(old)}, World(spec))
    want = only_the_recipient_rule_denies([r for r, _ in record_requests(spec, control)])
    assert want > 5
    assert [(g.change, g.rule) for g in diff.groups] == [(DENY_TO_ALLOW, "permit-planned-action")]
    assert diff.flips == want
    assert diff.groups[0].permission == "http/send/outbound_mail"


@pytest.fixture(scope="module")
def loosened(tmp_path_factory):
    return without_recipient_rule("rules", tmp_path_factory.mktemp("p"))


def cli(*args):
    return CliRunner().invoke(app, ["diff-policy", *map(str, args), "--scenario", "baseline",
                                    "--set", "horizon=2h", "--replications", "2"])


def test_exit_codes(loosened, tmp_path):
    old = POLICIES / FILES["rules"]
    same = cli(old, old, "--ci")
    assert same.exit_code == 0, same.output
    assert "0 allow -> deny, 0 deny -> allow" in same.output
    changed = cli(old, loosened, "--ci", "--no-outcomes")
    assert changed.exit_code == 1 and "deny_to_allow" in changed.output
    assert cli(old, loosened, "--no-outcomes").exit_code == 0  # without --ci: a report only
    expect = tmp_path / "expect.yaml"
    expect.write_text("accept:\n  - {change: deny_to_allow, permission: 'http/send/*'}\n")
    covered = cli(old, loosened, "--ci", "--no-outcomes", "--expect", expect, "--format", "md")
    assert covered.exit_code == 0, covered.output
    assert "| deny_to_allow | permit-planned-action | http/send/outbound_mail |" in covered.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("accept: 5\n")
    for args in ((old, tmp_path / "missing.yaml"), (old, loosened, "--expect", bad),
                 (old, POLICIES / FILES["cedar"]), (old, loosened, "--format", "xml"),
                 (old, loosened, "--engine", "xacml")):
        r = cli(*args, "--no-outcomes")
        assert r.exit_code == 2, (args, r.output)
        assert "Traceback" not in r.output


def test_outcomes_are_paired_differences(loosened):
    r = cli(POLICIES / FILES["rules"], loosened, "--format", "json")
    import json

    data = json.loads(r.output)
    rows = {row["metric"]: row for row in data["outcomes"]}
    fd = rows["false_deny_rate"]
    assert fd["diff"] < 0 and fd["diff"] == pytest.approx(fd["new"] - fd["old"])
    assert fd["ci_low"] <= fd["diff"] <= fd["ci_high"]
    assert data["replications"] == 2
