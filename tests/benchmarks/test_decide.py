"""decide() of every control model on requests recorded from the baseline workload."""

from __future__ import annotations

import pytest

from simharness import bench

pytestmark = pytest.mark.benchmark


@pytest.mark.parametrize("name", bench.DEFAULT_CONTROLS)
def test_decide(benchmark, checked_controls, name):
    control, requests, expected = checked_controls[name]
    decide = control.decide
    benchmark.extra_info.update(model=control.model, requests=len(requests),
                                denied=sum(not d.allow for d in expected))

    got = benchmark(lambda: [decide(r) for r in requests])

    assert got == expected
    if name != "none":
        assert any(d.allow for d in got) and not all(d.allow for d in got)


def test_reference_python_check(benchmark):
    """The yardstick the CI gate divides by: a plain-Python role check over the same count."""
    case = bench.reference_case(1000)
    benchmark(case.run)
