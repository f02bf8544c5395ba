"""The event loop's guards: time never moves backwards or silently stops."""

from __future__ import annotations

import math

import pytest

from simharness.engine import Kernel


@pytest.mark.parametrize("delay", [-1.0, math.nan, math.inf])
def test_kernel_refuses_delays_that_break_time(delay):
    def sleeper():
        yield 1.0
        yield delay

    k = Kernel()
    k.start(sleeper())
    with pytest.raises(ValueError, match="sleeper.*finite number >= 0"):
        k.run(10.0)
    with pytest.raises(ValueError, match="finite"):
        Kernel().start(sleeper(), delay)


def test_events_counts_the_wake_ups_scheduled():
    """Two processes: one sleeping three times, one once; with their starts, 2 + 3 + 1 wake-ups
    were scheduled (the final wake-ups past `until` included)."""
    def sleeper(n):
        for _ in range(n):
            yield 1.0

    k = Kernel()
    k.start(sleeper(3))
    k.start(sleeper(1))
    k.run(10.0)
    assert k.events() == 6
