"""The garbage collector around a run: paused while the workload is built, the workload frozen
out of its passes while the engine runs, and both undone afterwards (a library must not leave
the caller's process with the collector off or objects frozen)."""

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


def test_building_pauses_the_collector_and_restores_it(spec, collector, monkeypatch):
    seen = []
    build = workload.WorkloadBuilder.build

    def spy(self):
        seen.append(gc.isenabled())
        return build(self)

    monkeypatch.setattr(workload.WorkloadBuilder, "build", spy)
    gc.enable()
    workload.build_workload(spec, 0)
    assert seen == [False] and gc.isenabled()
    gc.disable()  # a caller that turned it off keeps it off
    workload.build_workload(spec, 0)
    assert not gc.isenabled()


def test_a_failed_build_still_restores_the_collector(spec, collector, monkeypatch):
    def boom(self):
        raise RuntimeError("bad draw")

    monkeypatch.setattr(workload.WorkloadBuilder, "build", boom)
    gc.enable()
    with pytest.raises(RuntimeError, match="bad draw"):
        workload.build_workload(spec, 0)
    assert gc.isenabled()


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
    log = engine.simulate(wl, control)
    assert log.actions
    # every task of the workload was alive when the run began, so it was frozen
    assert frozen[0] >= before + sum(1 for _ in wl.iter_tasks())
    assert gc.get_freeze_count() == 0
