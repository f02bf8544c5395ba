"""The garbage collector around a run: paused while the engine runs, what exists when it starts
frozen out of its passes, and both undone afterwards (a library must not leave the caller's
process with the collector off or objects frozen)."""

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
    frozen, paused = [], []
    run = engine.Kernel.run

    def spy(self, until):
        frozen.append(gc.get_freeze_count())
        paused.append(not gc.isenabled())
        return run(self, until)

    monkeypatch.setattr(engine.Kernel, "run", spy)
    before = gc.get_freeze_count()
    alive = len(gc.get_objects())
    log = engine.simulate(wl, control)
    assert log.actions
    # everything alive when the run began was frozen
    assert frozen[0] >= before + alive // 2
    assert gc.get_freeze_count() == 0
    assert paused == [True] and gc.isenabled()
    gc.disable()  # a caller that had it off keeps it off
    engine.simulate(workload.build_workload(spec, 0), make(entry.name, entry.model,
                                                          entry.params, World(spec)))
    assert not gc.isenabled()
