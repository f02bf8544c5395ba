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

Memory: rows are converted `CHUNK_ROWS` at a time, so the writer adds a bounded amount on top of
the run's own action log.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from simharness.engine import ACTION_FIELDS
from simharness.results import atomic_path

CHUNK_ROWS = 16_384
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


def write_run(path: str | os.PathLike[str], actions: Sequence[tuple], control: str,
              replication: int, point: Mapping[str, Any], sweep: Mapping[str, Any]) -> Path:
    """Write one run's action log to `path` in chunks, atomically."""
    pa, pq = _pa()
    sch = schema(sweep)
    path = Path(path)
    consts = {"control": control, "replication": replication,
              **{k: _cell(point.get(k), sch.field(k).type) for k in sweep}}
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, sch, compression="zstd") as writer:
        for start in range(0, max(len(actions), 1), CHUNK_ROWS):
            chunk = actions[start:start + CHUNK_ROWS]
            n = len(chunk)
            cols = [pa.array([v] * n, type=sch.field(k).type) for k, v in consts.items()]
            by_field = list(zip(*chunk, strict=True)) if n else [() for _ in ACTION_FIELDS]
            for name, values in zip(ACTION_FIELDS, by_field, strict=True):
                typ = sch.field(name).type
                cells = [_cell(v, typ) for v in values] if pa.types.is_string(typ) else values
                cols.append(pa.array(cells, type=typ))
            writer.write_batch(pa.RecordBatch.from_arrays(cols, schema=sch))
            del chunk, by_field, cols
    return path


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
