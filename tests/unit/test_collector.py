"""The garbage collector around a run: what exists when the engine starts is frozen out of its
passes while the engine runs, and unfrozen afterwards (a library must not leave the caller's
process with objects frozen)."""

from __future__ import annotations

import gc

import pytest

from simharness import bench, engine, workload
from simharness.controls.base import World, make


@pytest.fixture
def spec():
    return bench.speed_scenario(agents=5, horizon="10m")


@pytest.fixture
def collector():
    was = gc.isenabled()
    yield
    gc.unfreeze()
    (gc.enable if was else gc.disable)()


def test_the_engine_freezes_what_exists_for_the_run_and_unfreezes_it(spec, collector,
                                                                     monkeypatch):
    wl = workload.build_workload(spec, 0)
    entry = spec.controls[0]
    control = make(entry.name, entry.model, entry.params, World(spec))
    frozen = []
    run = engine.Kernel.run

    def spy(self, until):
        frozen.append(gc.get_freeze_count())
        return run(self, until)

    monkeypatch.setattr(engine.Kernel, "run", spy)
    before = gc.get_freeze_count()
    alive = len(gc.get_objects())
    log = engine.simulate(wl, control)
    assert log.actions
    # everything alive when the run began was frozen
    assert frozen[0] >= before + alive // 2
    assert gc.get_freeze_count() == 0
