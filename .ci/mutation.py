"""Mutation testing with mutmut: the full report, or the bounded sample CI runs.

    python .ci/mutation.py --report docs/mutation.md          # every group, every mutant (hours)
    python .ci/mutation.py --sample 3 --min-score 0.9          # CI: mutant #3 of every function
    python .ci/mutation.py --group controls --group policy     # some groups only
    python .ci/mutation.py --group engine --fraction 0.1 --seed 1  # a uniform 10 % sample

Each group mutates some modules and runs only the tests meant to pin them (mutmut then runs,
per mutant, the tests that reach the mutated function). The work happens in a copy of the
tracked files under --workdir, never in the checkout. Survivors judged equivalent (the program
cannot behave differently) are listed with a reason in .ci/mutation_equivalent.txt and left
out of the score: killed / (mutants - equivalent). "No tests" and timeouts count as they are:
a mutant no test reaches is not killed; one that hangs is caught.

A sample takes mutant number K of every function (mutmut numbers each function's mutants
1, 2, ...): one mutant per function with at least K, spread over the code rather than the first
functions, and the same mutants for the same code. A fraction draws that share of the group's
mutants uniformly at random (seeded): an unbiased estimate of the whole group's score, which
the report gives with its 95 % Wilson interval.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT = ROOT / ".ci" / "mutation_equivalent.txt"
# group -> (modules to mutate, tests that pin them)
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "controls": (["simharness/controls/*.py"],
                 ["tests/unit/test_controls.py", "tests/unit/test_seed_controls.py",
                  "tests/unit/test_inplan_controls.py", "tests/unit/test_golden_cases.py",
                  "tests/unit/test_authority.py", "tests/unit/test_control_mechanisms.py"]),
    "policy": (["simharness/policy/*.py"],
               ["tests/unit/test_policy_rules.py", "tests/unit/test_engines.py",
                "tests/unit/test_controls.py", "tests/unit/test_task_policy_engines.py",
                "tests/unit/test_diff_policy.py", "tests/unit/test_loader.py"]),
    "engine": (["simharness/engine.py", "simharness/reviewers.py"],
               ["tests/unit/test_engines.py", "tests/unit/test_kernel.py",
                "tests/unit/test_golden_cases.py", "tests/unit/test_behaviour.py",
                "tests/unit/test_inplan_controls.py", "tests/unit/test_backends.py",
                "tests/unit/test_seed_controls.py", "tests/unit/test_determinism.py",
                "tests/unit/test_engine_mechanisms.py", "tests/unit/test_authority.py",
                "tests/unit/test_streaming.py", "tests/properties", "tests/validation"]),
    "metrics": (["simharness/metrics.py", "simharness/stats.py"],
                ["tests/unit/test_metrics.py", "tests/unit/test_stats.py",
                 "tests/unit/test_authority.py", "tests/unit/test_golden_cases.py",
                 "tests/unit/test_streaming.py"]),
    "tally": (["simharness/tally.py"],
              ["tests/unit/test_metrics.py", "tests/unit/test_streaming.py"]),
    "authority": (["simharness/authority.py"],
                  ["tests/unit/test_authority.py", "tests/unit/test_metrics.py",
                   "tests/unit/test_engine_mechanisms.py", "tests/unit/test_streaming.py"]),
    "workload": (["simharness/workload.py", "simharness/misuse.py"],
                 ["tests/unit/test_workload.py", "tests/unit/test_behaviour.py",
                  "tests/unit/test_golden_cases.py", "tests/unit/test_determinism.py",
                  "tests/unit/test_streaming.py", "tests/unit/test_workload_sampling.py"]),
    "traces": (["simharness/traces/*.py"], ["tests/unit/test_traces.py"]),
    "reference": (["simharness/reference.py"], ["tests/unit/test_reference.py"]),
}
KILLED = {1, 3, 36, 37, 24, -24, 152, 255}  # test failure, pytest error, timeout, type check
SURVIVED = {0}
NO_TESTS = {5, 33}


def equivalent() -> dict[str, str]:
    """Mutant name -> why it cannot change behaviour."""
    out: dict[str, str] = {}
    if EQUIVALENT.exists():
        for line in EQUIVALENT.read_text().splitlines():
            name, _, reason = line.partition("#")
            if name.strip():
                out[name.strip()] = reason.strip()
    return out


def _copy_tree(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _configure(dest: Path, modules: list[str], tests: list[str]) -> None:
    """mutmut's settings for one group, replacing any in pyproject.toml."""
    import glob

    mutate = {p for m in modules for p in glob.glob(m, root_dir=dest)}
    every = {p for p in glob.glob("simharness/**/*.py", root_dir=dest, recursive=True)}
    text = (dest / "pyproject.toml").read_text()
    text = text.split("[tool.mutmut]")[0]
    text += ("\n[tool.mutmut]\n"
             'source_paths = ["simharness"]\n'
             f"do_not_mutate = {json.dumps(sorted(every - mutate))}\n"
             f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
             # Fork each mutant from a process that has collected the tests but run none:
             # forking from one that ran them would inherit warm caches (lru_cache, compiled
             # policies) and let mutants of cached functions survive unseen.
             'process_isolation = "forkserver"\n'
             'pytest_add_cli_args = ["-p", "no:randomly", "-k", '
             '"not slowed_decide and not sweep_speedup"]\n'
             'also_copy = [".ci", "pyproject.toml", "README.md", "scenarios", "controls", '
             '"tests", "benchmarks", "docs"]\n')
    (dest / "pyproject.toml").write_text(text)


_GENERATE = ("import os, mutmut.__main__ as m; m.set_mutant_under_test('mutant_generation'); "
             "os.makedirs('mutants', exist_ok=True); m.copy_src_dir(); m.copy_also_copy_files(); "
             "m.setup_source_paths(); m.create_mutants({children})")


def _mutant_names(dest: Path, children: int) -> list[str]:
    """Every mutant of the group, generated without running a test (mutmut's own steps)."""
    subprocess.run([sys.executable, "-c", _GENERATE.format(children=children)], cwd=dest,
                   check=True, capture_output=True)
    return sorted(key for meta in (dest / "mutants").rglob("*.meta")
                  for key in json.loads(meta.read_text())["exit_code_by_key"])


def draw(names: list[str], fraction: float, seed: int) -> list[str]:
    """A uniform sample without replacement, the same for the same names, fraction and seed."""
    k = max(1, round(fraction * len(names)))
    return sorted(random.Random(seed).sample(sorted(names), k))


def run_group(name: str, workdir: Path, sample: int | None, children: int,
              fraction: float | None = None, seed: int = 0) -> dict[str, int]:
    """Run mutmut on one group; mutant name -> exit code."""
    modules, tests = GROUPS[name]
    dest = workdir / name
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    _copy_tree(dest)
    _configure(dest, modules, tests)
    cmd = [sys.executable, "-m", "mutmut", "run", f"--max-children={children}"]
    chosen: set[str] | None = None
    if sample is not None:
        cmd.append(f"*__mutmut_{sample}")
    elif fraction is not None:
        every = _mutant_names(dest, children)
        chosen = set(draw(every, fraction, seed))
        print(f"[{name}] {len(chosen)} of {len(every)} mutants drawn (seed {seed})", flush=True)
        cmd += sorted(chosen)
    print(f"[{name}] {' '.join(cmd[2:6])}{' ...' if len(cmd) > 6 else ''}", flush=True)
    proc = subprocess.run(cmd, cwd=dest, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"mutmut failed on group {name} (exit {proc.returncode})")
    codes: dict[str, int] = {}
    for meta in (dest / "mutants").rglob("*.meta"):
        for key, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if chosen is not None and key not in chosen:
                continue
            if sample is None or key.endswith(f"__mutmut_{sample}"):
                codes[key] = code
    return codes


def classify(codes: dict[str, int], eq: dict[str, str]) -> Counter:
    c: Counter = Counter()
    for key, code in codes.items():
        if key in eq and code in SURVIVED:
            c["equivalent"] += 1
        elif code in KILLED:
            c["killed"] += 1
        elif code in SURVIVED:
            c["survived"] += 1
        elif code in NO_TESTS:
            c["no tests"] += 1
        elif code is None:
            c["not checked"] += 1
        else:
            c["other"] += 1
    return c


def score(c: Counter) -> float:
    judged = c["killed"] + c["survived"] + c["no tests"] + c["other"]
    return c["killed"] / judged if judged else 1.0


def wilson(killed: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (the sampled score's uncertainty)."""
    if n == 0:
        return (0.0, 1.0)
    p = killed / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _interval(c: Counter) -> str:
    judged = c["killed"] + c["survived"] + c["no tests"] + c["other"]
    lo, hi = wilson(c["killed"], judged)
    return f" (95 % {lo:.1%}-{hi:.1%})"


def module_of(key: str) -> str:
    return key.split(".x_")[0].split(".xǁ")[0]


def report(results: dict[str, dict[str, int]], eq: dict[str, str], sample: int | None,
           fraction: float | None = None, seed: int = 0) -> str:
    drawn = f" --fraction {fraction} --seed {seed}" if fraction else ""
    lines = ["# Mutation testing", "",
             "Generated by `python .ci/mutation.py --report docs/mutation.md`"
             + (f" --sample {sample}" if sample else "") + drawn + " (mutmut "
             + _mutmut_version() + "). Score: killed / (mutants - judged equivalent).", "",
             "| group | module | mutants | killed | survived | no tests | equivalent | score |",
             "|---|---|---|---|---|---|---|---|"]
    survivors = []
    for group, codes in results.items():
        by_module: dict[str, dict[str, int]] = {}
        for key, code in codes.items():
            by_module.setdefault(module_of(key), {})[key] = code
        for module, mc in sorted(by_module.items()):
            c = classify(mc, eq)
            lines.append(f"| {group} | {module} | {len(mc)} | {c['killed']} | {c['survived']} | "
                         f"{c['no tests']} | {c['equivalent']} | {score(c):.1%} |")
            survivors += [(k, eq.get(k, "")) for k, v in sorted(mc.items()) if v in SURVIVED]
        c = classify(codes, eq)
        lines.append(f"| **{group}** | all | {len(codes)} | {c['killed']} | {c['survived']} | "
                     f"{c['no tests']} | {c['equivalent']} | **{score(c):.1%}**"
                     + (_interval(c) if fraction else "") + " |")
    lines += ["", "## Survivors", "",
              "Judged equivalent ones give the reason (from .ci/mutation_equivalent.txt); the "
              "rest are tests still to write. `mutmut show NAME` in the group's work folder "
              "prints the diff.", ""]
    lines += [f"- `{k}`" + (f": equivalent, {r}" if r else "") for k, r in survivors]
    return "\n".join(lines) + "\n"


def _mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--group", action="append", choices=sorted(GROUPS),
                    help="groups to run (repeatable; default all)")
    ap.add_argument("--sample", type=int, metavar="K",
                    help="only mutant number K of every function (CI)")
    ap.add_argument("--min-score", type=float, default=None, metavar="S",
                    help="exit 1 when a group's score is below S (0-1)")
    ap.add_argument("--report", type=Path, help="write the markdown report here")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where the copies live (default: a temporary folder)")
    ap.add_argument("--fraction", type=float, metavar="F",
                    help="a uniform random share F (0-1] of each group's mutants")
    ap.add_argument("--seed", type=int, default=0, help="seed of the --fraction draw")
    ap.add_argument("--children", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    if args.min_score is not None and not 0 <= args.min_score <= 1:
        ap.error("--min-score must be between 0 and 1")
    if args.fraction is not None and not 0 < args.fraction <= 1:
        ap.error("--fraction must be in (0, 1]")
    if args.fraction is not None and args.sample is not None:
        ap.error("--fraction and --sample choose mutants in two ways: give one")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="simharness-mutation-"))
    eq = equivalent()
    results = {g: run_group(g, workdir, args.sample, args.children, args.fraction, args.seed)
               for g in (args.group or list(GROUPS))}
    failed = []
    for group, codes in results.items():
        c = classify(codes, eq)
        s = score(c)
        print(f"{group:9} mutants {len(codes):5}  killed {c['killed']:5}  survived "
              f"{c['survived']:4}  no tests {c['no tests']:3}  equivalent {c['equivalent']:3}  "
              f"score {s:.1%}" + (_interval(c) if args.fraction else ""))
        if args.min_score is not None and s < args.min_score:
            failed.append(group)
    if args.report:
        args.report.write_text(report(results, eq, args.sample, args.fraction, args.seed))
        print(f"wrote {args.report}")
    if failed:
        print(f"mutation score below {args.min_score:.0%}: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
