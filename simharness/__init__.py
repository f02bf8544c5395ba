"""simharness: a discrete-event simulator and benchmark harness for authorization controls on
autonomous AI agents."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_results", "load_scenario", "run", "sweep"]


def __getattr__(name: str) -> Any:
    # Lazy: `import simharness` stays cheap and free of import cycles. (The sweep machinery
    # lives in `sweeps.py` so that no submodule shadows the `simharness.sweep` function.)
    if name in ("load_results", "load_scenario", "run", "sweep"):
        from simharness import api

        return getattr(api, name)
    raise AttributeError(f"module 'simharness' has no attribute {name!r}")
