"""The Dask executor (`--executor dask`): runs tasks on a Dask distributed cluster.

`scheduler` is the address of a running scheduler (`tcp://host:8786`); without one a
LocalCluster is started for the duration of the sweep (one single-threaded worker process per
core, or `workers` of them). Workers need simharness installed at the same version: a run's key
includes the code version, so results from a different engine are never mixed in. Results are
yielded as they finish; the caller orders them (the tables follow the sweep's order).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from simharness.audit import MissingExtraError

T = TypeVar("T")
_EXTRA_HINT = "--executor dask needs Dask distributed: pip install 'simharness[dask]'"


def require() -> None:
    """Raise MissingExtraError naming the extra when dask.distributed is absent."""
    _distributed()


def _distributed():
    try:
        import distributed
    except ImportError as e:
        raise MissingExtraError(f"{_EXTRA_HINT} ({e})") from None
    return distributed


def dask_map(fn: Callable[[T], Any], tasks: Sequence[T], scheduler: str | None = None,
             workers: int | None = None, processes: bool = True) -> Iterator[Any]:
    """Apply `fn` to every task on a Dask cluster; yield results in completion order."""
    distributed = _distributed()
    tasks = list(tasks)
    if not tasks:
        return
    cluster = None
    if scheduler is None:
        n = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=processes,
                                           dashboard_address=":0", silence_logs=logging.ERROR)
    try:
        with distributed.Client(cluster if cluster is not None else scheduler) as client:
            # pure=False: never deduplicate by argument hash; every task is a run of its own.
            futures = client.map(fn, tasks, pure=False)
            yield from _results(distributed.as_completed(futures, with_results=True))
    finally:
        if cluster is not None:
            cluster.close()


def _results(done: Iterable[tuple[Any, Any]]) -> Iterator[Any]:
    for _future, result in done:
        yield result
