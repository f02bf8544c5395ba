"""`--audit`: the action log as Parquet (one row per action), per run and merged."""

from __future__ import annotations

import builtins
import json

import pytest

import simharness
from simharness import audit
from simharness.engine import ACTION_FIELDS
from tests.conftest import make_spec

pq = pytest.importorskip("pyarrow.parquet", reason="needs pyarrow (pip install -e .[dev])")


def test_actions_parquet_has_one_row_per_action_and_the_documented_columns(tmp_path):
    spec = make_spec(horizon="40m", warmup="10m", replications=2,
                     misuse={"rate": 0.3})
    res = simharness.sweep(spec, {"agents.0.count": [2, 3]}, controls=["static_iam"],
                           out=tmp_path, audit=True)
    table = pq.read_table(tmp_path / audit.MERGED)
    assert table.schema.names == ["control", "replication", "agents.0.count", *ACTION_FIELDS]
    assert str(table.schema.field("agents.0.count").type) == "int64"
    df = table.to_pandas()
    # The summary counts actions after the warm-up; the audit log has them all.
    measured = df[df["time"] >= spec.warmup]
    counts = measured.groupby(["agents.0.count", "control", "replication"]).size()
    for _, row in res.summary.iterrows():
        assert counts[(row["agents.0.count"], row["control"], row["replication"])] == row["actions"]
    assert len(df) > len(measured) > 0
    assert set(df["control"]) == {"static_iam"}  # the hidden `none` reference is not audited
    # rows follow the sweep's order, whatever order the runs finished in
    order = df[["agents.0.count", "replication"]].drop_duplicates().values.tolist()
    assert order == [[2, 0], [2, 1], [3, 0], [3, 1]]
    assert len(list((tmp_path / audit.AUDIT_DIR).glob("*.parquet"))) == 4


def test_chunks_bound_the_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(audit, "CHUNK_ROWS", 7)
    actions = [tuple(range(len(ACTION_FIELDS)))] * 20
    path = audit.write_run(tmp_path / "r.parquet", [_typed(a) for a in actions], "c", 0, {}, {})
    f = pq.ParquetFile(path)
    assert f.metadata.num_rows == 20 and f.metadata.num_row_groups == 3


def _typed(a: tuple) -> tuple:
    types = audit._TYPES
    return tuple(float(v) if types.get(n) == "float64" else bool(v) if types.get(n) == "bool"
                 else v if n in types else str(v) for n, v in zip(ACTION_FIELDS, a, strict=True))


def test_audit_after_a_plain_run_computes_only_the_missing_audit_files(tmp_path):
    spec = make_spec(horizon="20m", replications=1)
    simharness.sweep(spec, {}, controls=["static_iam"], out=tmp_path)
    simharness.sweep(spec, {}, controls=["static_iam"], out=tmp_path, audit=True)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["runs_computed"] == 1  # static_iam again; its hidden `none` is reused
    assert (tmp_path / audit.MERGED).is_file()


def test_missing_pyarrow_names_the_extra(monkeypatch):
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError("No module named 'pyarrow'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(audit.MissingExtraError, match=r"simharness\[parquet\]"):
        audit.require()
