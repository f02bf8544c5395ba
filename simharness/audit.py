"""`--audit`: the action log as Parquet, one row per action, written in chunks.

Layout of a results folder with `--audit`:
- `audit/<run key>.parquet`: one file per reported run, written by the worker that ran it
  (temp file + `os.replace`, like `runs/<key>.json`), so an interrupted sweep resumes with the
  audit files of its finished runs and a re-run only adds the missing ones.
- `actions.parquet`: every run's rows merged in the order of the sweep (never the order workers
  finished), copied one row group at a time.

Columns: `control`, `replication`, one per swept parameter, then `engine.ACTION_FIELDS`.
Every action is written, including those before the warm-up; the summary's `actions` counts only
those with `time >= warmup`. Hidden `none` reference runs (task inflation) are not audited.

Memory: the engine hands the writer `CHUNK_ROWS` actions at a time as it logs them, and a run
that streams its log (`keep_log=False`) keeps none of them after that, so the writer adds one
row group's worth of memory to a run of any length.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from simharness.records import ACTION_FIELDS, CHUNK_ROWS
from simharness.results import atomic_path

AUDIT_DIR = "audit"
MERGED = "actions.parquet"
_EXTRA_HINT = "--audit needs pyarrow: pip install 'simharness[parquet]'"

# Types of the engine's action tuples; a field not listed here is inferred (null -> string).
_TYPES = {
    "time": "float64", "agent": "int64", "task": "int64", "depth": "int64",
    "in_scope": "bool", "misuse_id": "int64", "goal": "bool", "allowed": "bool",
    "latency": "float64", "duration": "float64", "credential": "int64", "risk": "float64",
    "visible": "bool", "attributed": "bool", "without_decision": "bool", "weight": "float64",
}


class MissingExtraError(ImportError):
    """An optional dependency (an extra of simharness) is not installed."""


def require() -> None:
    """Raise MissingExtraError naming the extra when pyarrow is absent."""
    _pa()


def _pa():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise MissingExtraError(f"{_EXTRA_HINT} ({e})") from None
    return pa, pq


def run_path(folder: str | os.PathLike[str], key: str) -> Path:
    return Path(folder) / AUDIT_DIR / f"{key}.parquet"


def _type_of(values: Sequence[Any]):
    pa, _ = _pa()
    try:
        t = pa.array(list(values)).type
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.string()
    return pa.string() if pa.types.is_null(t) else t


def sweep_types(points: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One Arrow type per swept parameter, from all its values (mixed types -> string)."""
    values: dict[str, list[Any]] = {}
    for p in points:
        for k, v in p.items():
            values.setdefault(k, []).append(v)
    return {k: _type_of(vs) for k, vs in values.items()}


def schema(sweep: Mapping[str, Any]):
    pa, _ = _pa()
    fields = [pa.field("control", pa.string()), pa.field("replication", pa.int64())]
    fields += [pa.field(k, t) for k, t in sweep.items()]
    fields += [pa.field(f, pa.type_for_alias(_TYPES.get(f, "string"))) for f in ACTION_FIELDS]
    return pa.schema(fields)


def _cell(v: Any, typ) -> Any:
    pa, _ = _pa()
    if v is not None and pa.types.is_string(typ) and not isinstance(v, str):
        return str(v)
    return v


@contextlib.contextmanager
def run_writer(path: str | os.PathLike[str], control: str, replication: int,
               point: Mapping[str, Any], sweep: Mapping[str, Any]
               ) -> Iterator[Callable[[Sequence[tuple]], None]]:
    """One run's audit file, written as the run logs: yields `write(chunk)`, which appends a
    chunk of action records as one row group. The file appears (atomically) when the block
    ends without error; on an error nothing is left behind."""
    pa, pq = _pa()
    sch = schema(sweep)
    consts = {"control": control, "replication": replication,
              **{k: _cell(point.get(k), sch.field(k).type) for k in sweep}}
    types = [sch.field(name).type for name in ACTION_FIELDS]
    strings = [pa.types.is_string(typ) for typ in types]
    written = [0]

    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, sch, compression="zstd") as writer:
        def write(chunk: Sequence[tuple]) -> None:
            n = len(chunk)
            cols = [pa.array([v] * n, type=sch.field(k).type) for k, v in consts.items()]
            by_field = list(zip(*chunk, strict=True)) if n else [() for _ in ACTION_FIELDS]
            for values, typ, string in zip(by_field, types, strings, strict=True):
                cells = [_cell(v, typ) for v in values] if string else values
                cols.append(pa.array(cells, type=typ))
            writer.write_batch(pa.RecordBatch.from_arrays(cols, schema=sch))
            written[0] += 1

        yield write
        if not written[0]:  # a run without actions still gets its (empty) file
            write([])


def write_run(path: str | os.PathLike[str], actions: Sequence[tuple], control: str,
              replication: int, point: Mapping[str, Any], sweep: Mapping[str, Any]) -> Path:
    """Write one run's kept action log to `path` in chunks, atomically."""
    with run_writer(path, control, replication, point, sweep) as write:
        for start in range(0, len(actions), CHUNK_ROWS):
            write(actions[start:start + CHUNK_ROWS])
    return Path(path)


def merge(folder: str | os.PathLike[str], keys_in_order: Sequence[str],
          sweep: Mapping[str, Any]) -> Path:
    """`actions.parquet`: the per-run files concatenated in `keys_in_order`, row group by row
    group (memory bounded by one row group), written atomically."""
    pa, pq = _pa()
    folder = Path(folder)
    sch = schema(sweep)
    target = folder / MERGED
    with atomic_path(target) as tmp, pq.ParquetWriter(tmp, sch, compression="zstd") as writer:
        for key in keys_in_order:
            src = pq.ParquetFile(run_path(folder, key))
            for i in range(src.num_row_groups):
                table = src.read_row_group(i)
                if table.schema != sch:
                    table = table.select(sch.names).cast(sch)
                writer.write_table(table)
    return target
