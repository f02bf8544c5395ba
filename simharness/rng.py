"""The seed tree: root seed -> replication -> stream role, all from one numpy SeedSequence.

No global random state anywhere: every random number in a run comes from a Generator made here,
so the same root seed gives the same bytes whatever process or worker runs the replication.
"""

from __future__ import annotations

import numpy as np

# Fixed ids, never reordered: changing one changes every result for that seed.
STREAMS: dict[str, int] = {
    "arrivals": 0,  # task arrival times and task choice
    "timing": 1,  # think and step times
    "misuse": 2,  # which tasks are misused, kind, injection point
    "signals": 3,  # risk scores seen by detectors and policies
    "delegation": 4,  # which agent takes a delegated sub-task
    "control": 5,  # randomness inside a control model (PDP service times, ...)
    "behaviour": 6,  # legitimate deviations from the plan (extras, substitutions)
    "scope": 7,  # what a predicted declared scope keeps and adds
    "arguments": 8,  # argument values of planned steps
}
_MASK = (1 << 64) - 1


def replication_seed(root: int, replication: int) -> np.random.SeedSequence:
    """The SeedSequence of one replication (independent of how many replications run)."""
    return np.random.SeedSequence(entropy=root, spawn_key=(replication,))


def stream(root: int, replication: int, role: str, *sub: int) -> np.random.Generator:
    """A Generator for one stream role of one replication; `sub` splits it further."""
    if role not in STREAMS:
        raise KeyError(f"unknown random stream {role!r}; known: {', '.join(STREAMS)}")
    seq = np.random.SeedSequence(entropy=root, spawn_key=(replication, STREAMS[role], *sub))
    return np.random.Generator(np.random.PCG64(seq))


def replication_int_seed(root: int, replication: int) -> int:
    """A 63-bit integer naming a replication's seed (reported in summary.csv)."""
    return int(replication_seed(root, replication).generate_state(2, np.uint32).view(np.uint64)[0] >> 1)


class BlockSampler:
    """Draws from a distribution in numpy blocks; `next()` returns one float.

    `next` is the bound `__next__` of a generator over the block's list, so a draw is one C
    call (this is called three times per simulated action)."""

    __slots__ = ("next",)

    def __init__(self, dist, rng: np.random.Generator, block: int = 4096) -> None:
        def draws():
            while True:
                yield from dist.sample(rng, block).tolist()

        self.next = draws().__next__


def keyed_uniform(root: int, replication: int, *key: int) -> float:
    """A uniform in [0, 1) that depends only on (root, replication, key): the same for every
    control of a replication, whatever happened before (splitmix64 over the key). For choices
    that only some controls reach, e.g. whether an agent replans after a denial of step k."""
    x = (root * 0x9E3779B97F4A7C15 + replication) & _MASK
    for k in key:
        x = (x ^ (k & _MASK)) * 0xBF58476D1CE4E5B9 & _MASK
        x = (x + 0x9E3779B97F4A7C15) & _MASK
        x ^= x >> 31
        x = x * 0x94D049BB133111EB & _MASK
        x ^= x >> 29
    return (x >> 11) / 9007199254740992.0
