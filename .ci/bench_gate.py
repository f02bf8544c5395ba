#!/usr/bin/env python
"""CI gate on the decision path: run the benchmarks and compare each one's ratio to the
same-run reference against the committed baseline; exit 1 beyond the allowed regression,
2 on a bad baseline or limit.

    python .ci/bench_gate.py [--baseline benchmarks/baseline.json] [--max-regression 25%]
                             [--rounds 50] [--json OUT] [--markdown OUT.md] [--update]

`--update` measures and writes a new baseline instead of gating (commit it deliberately).
Setting SIMHARNESS_BENCH_SLOW_DECIDE=<model> slows that model's decide() by a busy wait of
SIMHARNESS_BENCH_SLOW_US microseconds (default 1) per call, to show the gate failing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from simharness import bench
from simharness.controls.base import get_model

ROOT = Path(__file__).resolve().parent.parent


def slow_down(model: str, extra_us: float = 1.0) -> None:
    """Make `model`'s decide() slower by a busy wait (for demonstrating the gate)."""
    cls = get_model(model)
    real = cls.decide

    def decide(self, req):
        end = time.perf_counter_ns() + extra_us * 1000
        while time.perf_counter_ns() < end:
            pass
        return real(self, req)

    cls.decide = decide  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", default=str(ROOT / "benchmarks" / "baseline.json"))
    ap.add_argument("--max-regression", default="25%")
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--markdown", dest="markdown_out", help="also write the result as markdown")
    ap.add_argument("--update", action="store_true")
    args = ap.parse_args(argv)
    slow = os.environ.get("SIMHARNESS_BENCH_SLOW_DECIDE")
    if slow:
        extra = float(os.environ.get("SIMHARNESS_BENCH_SLOW_US", "1"))
        slow_down(slow, extra)
        print(f"(deliberately slowed {slow}.decide by {extra:g} us per call)")
    if args.update:
        data = bench.run_bench(n=args.rounds)
        bench.write_json(data, args.baseline)
        print(bench.format_results(data))
        print(f"wrote {args.baseline}")
        return 0
    if not Path(args.baseline).is_file():
        print(f"no baseline at {args.baseline}: run with --update to create one", file=sys.stderr)
        return 2
    try:
        return bench.bench_main(json_out=args.json_out, compare_to=args.baseline,
                                max_regression=args.max_regression, n=args.rounds,
                                markdown_out=args.markdown_out)
    except bench.BenchInputError as e:  # bad input is exit 2, distinct from a regression (1)
        print(f"bench gate: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
