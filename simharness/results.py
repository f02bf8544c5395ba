"""The results folder (DESIGN.md section 4): per-run JSON files, CSV tables, manifest, resume.

Every run is stored as `runs/<key>.json` the moment it finishes, so an interrupted sweep resumes
by skipping keys that exist. The CSV tables are rebuilt from those files in the order the caller
gives (the order of the sweep, never the order workers finished), with round-trip float text
(shortest `repr`), so the same seed gives byte-identical CSVs whatever the worker count.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simharness import stats
from simharness.metric_catalogue import METRIC_NAMES

__all__ = [
    "ID_COLUMNS",
    "OutputFolderError",
    "Results",
    "ResultsDir",
    "atomic_write_bytes",
    "atomic_write_text",
    "claim_folder",
    "code_version",
    "load_results",
    "manifest_base",
    "run_key",
    "to_csv_text",
]

ID_COLUMNS: tuple[str, ...] = ("scenario", "control", "replication", "seed")
TABLES: tuple[str, ...] = ("summary", "aggregate", "misuse", "misuse_kinds", "timeline",
                           "latency")
_PACKAGE_DIR = Path(__file__).resolve().parent
_HEX = re.compile(r"[0-9a-f]+")


# --------------------------------------------------------------------------- JSON and keys

def _json_default(o: Any) -> Any:
    """Make numpy scalars/arrays, paths, sets and pydantic models JSON-able."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, set | frozenset):
        return sorted(o, key=repr)
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    raise TypeError(f"cannot store {type(o).__name__} in JSON: {o!r}")


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, floats by repr: the same object always gives the same text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      default=_json_default)


def run_key(scenario_sha256: str, control_name: str, control_params: Mapping[str, Any],
            replication: int, seed: int, sweep_point: Mapping[str, Any],
            code_version: str) -> str:
    """sha256 hex of everything that determines one run's output."""
    payload = {
        "scenario_sha256": scenario_sha256,
        "control": control_name,
        "control_params": dict(control_params),
        "replication": int(replication),
        "seed": int(seed),
        "sweep_point": dict(sweep_point),
        "code_version": code_version,
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


@lru_cache(maxsize=1)
def code_version() -> str:
    """`<version>+<hash>`: the hash covers every .py file of the package, so an edited engine
    does not resume from runs that an older engine produced."""
    h = hashlib.sha256()
    for p in sorted(_PACKAGE_DIR.rglob("*.py")):
        if "__pycache__" in p.parts:
            continue
        h.update(p.relative_to(_PACKAGE_DIR).as_posix().encode("utf-8") + b"\0")
        h.update(p.read_bytes() + b"\0")
    return f"{_simharness_version()}+{h.hexdigest()[:16]}"


def _simharness_version() -> str:
    import simharness

    version = getattr(simharness, "__version__", None)
    if version:
        return str(version)
    try:
        return importlib.metadata.version("simharness")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


# --------------------------------------------------------------------------- atomic writes

@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temp path in `path`'s folder; on success it replaces `path` (`os.replace`), on
    failure it is removed: a reader sees the old file or the new one, never a torn write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _file_mode())  # mkstemp makes 0600; results are shared like any file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


@lru_cache(maxsize=1)
def _file_mode() -> int:
    """0666 under the process umask: the mode `open()` would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` atomically (fsynced before the rename, so it survives a crash)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """UTF-8 text through `atomic_write_bytes` (no newline translation)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable on POSIX; not possible (nor needed) on Windows.
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- output folder

class OutputFolderError(Exception):
    """The results folder cannot be used (bad input: the CLI exits 2)."""


LOCK_NAME = ".simharness.lock"
#: files `plot` and `report` derive from the tables: stale once the tables change
VIEWS: tuple[str, ...] = ("report.html", "report.md")


@contextlib.contextmanager
def claim_folder(path: str | os.PathLike[str], scenario: str | None) -> Iterator[ResultsDir]:
    """Check and lock a results folder before anything is simulated into it.

    Creates the folder and writes a probe (a file or an unwritable folder fails now, not after
    the simulation); refuses a non-empty folder that is not a results folder (it would
    overwrite the user's files) and one whose manifest names another scenario (tables of two
    experiments would mix); holds an exclusive lock so that a second run into the same folder
    fails at once instead of redoing the same work. Raises OutputFolderError.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"--out {folder}: is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputFolderError(f"--out {folder}: cannot write there ({e.strerror or e}); "
                                "choose another folder") from None
    visible = [p.name for p in folder.iterdir() if not p.name.startswith(".")]
    if visible and not (folder / "manifest.json").exists() and not (folder / "runs").is_dir():
        raise OutputFolderError(f"--out {folder}: the folder holds other files "
                                f"({', '.join(sorted(visible)[:3])}) and is not a results "
                                "folder; choose an empty or new folder")
    with _lock(folder / LOCK_NAME):
        other = _manifest_scenario(folder / "manifest.json")
        if scenario is not None and other is not None and other != scenario:
            raise OutputFolderError(f"--out {folder}: holds results of scenario {other!r}, "
                                    f"not {scenario!r}; choose another folder")
        yield ResultsDir(folder)


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    # flock: released by the OS when the process dies, so a killed run never leaves it held.
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks in the standard library; run unlocked
        yield
        return
    with open(path, "a+b") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputFolderError(f"--out {path.parent}: another simharness run is writing "
                                    "into this folder; wait for it or choose another") from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _manifest_scenario(path: Path) -> str | None:
    """The scenario a results folder's manifest names (None: no readable manifest)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    name = data.get("scenario") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def _remove_views(folder: Path) -> None:
    """Drop the report and figures: they were drawn from tables that just changed."""
    for name in VIEWS:
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    plots = folder / "plots"
    if plots.is_dir():
        for png in plots.glob("*.png"):
            png.unlink()
        with contextlib.suppress(OSError):
            plots.rmdir()


# --------------------------------------------------------------------------- CSV

def _float_text(x: float) -> str:
    return repr(float(x))


def to_csv_text(df: pd.DataFrame) -> str:
    """CSV text that is byte-stable and round-trips every float.

    Floats are written by `repr` (shortest text that parses back to the same double), not a
    fixed "%.10g": the CSVs are the archive of record and paired differences or re-aggregation
    must not drift from rounding. NaN is an empty cell; lines end in "\\n" on every platform.
    """
    return _defuse(df).to_csv(index=False, lineterminator="\n", float_format=_float_text,
                              na_rep="")


#: what a spreadsheet reads as the start of a formula (OWASP CSV injection)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _defuse(df: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula (a sweep value `=cmd|...`) get a
    leading `'`; numbers and every other cell are left alone, so the bytes stay the same."""
    def cell(v: Any) -> Any:
        return "'" + v if isinstance(v, str) and v.startswith(_FORMULA_START) else v

    return _map_text(df, cell)


def _map_text(df: pd.DataFrame, cell: Callable[[Any], Any]) -> pd.DataFrame:
    """`df` with `cell` applied to its text columns (itself when nothing changes)."""
    out = df
    for i, c in enumerate(df.columns):
        if df[c].dtype == object or pd.api.types.is_string_dtype(df[c].dtype):
            mapped = df[c].map(cell)
            if not mapped.equals(df[c]):
                out = out.copy() if out is df else out
                out.isetitem(i, mapped)
    return out


def _undefuse(df: pd.DataFrame) -> pd.DataFrame:
    """The values `_defuse` protected, as they were."""
    def cell(v: Any) -> Any:
        return v[1:] if isinstance(v, str) and v[:1] == "'" and v[1:].startswith(
            _FORMULA_START) else v

    return _map_text(df, cell)


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame()
    try:
        # Only empty cells are missing: a control may legitimately be called "NA" or "null".
        return _undefuse(pd.read_csv(path, keep_default_na=False, na_values=[""]))
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


# --------------------------------------------------------------------------- results folder

@dataclass
class Results:
    """The tables of a results folder; a missing table is an empty DataFrame."""

    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    aggregate: pd.DataFrame = field(default_factory=pd.DataFrame)
    misuse: pd.DataFrame = field(default_factory=pd.DataFrame)
    misuse_kinds: pd.DataFrame = field(default_factory=pd.DataFrame)
    timeline: pd.DataFrame = field(default_factory=pd.DataFrame)
    latency: pd.DataFrame = field(default_factory=pd.DataFrame)
    manifest: dict[str, Any] = field(default_factory=dict)


class ResultsDir:
    """A results folder: `runs/<key>.json` per finished run, tables and `manifest.json`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.runs_dir = self.path / "runs"

    def __repr__(self) -> str:
        return f"ResultsDir({str(self.path)!r})"

    def _run_path(self, key: str) -> Path:
        # Keys become file names: accept only hex so a bad key cannot escape runs/.
        if not isinstance(key, str) or not _HEX.fullmatch(key):
            raise ValueError(f"run key must be a lowercase hex string, got {key!r}")
        return self.runs_dir / f"{key}.json"

    def has(self, key: str) -> bool:
        """True if the run with this key has finished and its saved file is intact. A damaged
        file (torn, empty, edited) is moved aside as `<key>.json.corrupt` with a warning, so
        that only that run is computed again."""
        path = self._run_path(key)
        if not path.is_file():
            return False
        problem = _run_problem(path, key)
        if problem is None:
            return True
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        sys.stderr.write(f"warning: {path}: {problem}; moved aside to {aside.name}, "
                         "the run is computed again\n")
        return False

    def save_run(self, result: Mapping[str, Any]) -> Path:
        """Store one RunResult as `runs/<key>.json` (sorted keys, floats by repr) with a
        checksum of its content, so that resume can tell an intact file from a damaged one."""
        for required in ("key", "row"):
            if required not in result:
                raise ValueError(f"run result lacks {required!r}")
        path = self._run_path(result["key"])
        # Checksummed as it reads back (JSON turns tuples into lists, numbers keys into text).
        # NaN/inf are kept (Python's JSON dialect) so a metric with no data round-trips as NaN.
        data = json.loads(canonical_json({k: v for k, v in result.items() if k != "checksum"}))
        data["checksum"] = _checksum(data)
        atomic_write_text(path, canonical_json(data) + "\n")
        return path

    def load_run(self, key: str) -> dict[str, Any]:
        """One stored RunResult."""
        path = self._run_path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"run {key} has no file {path}: it did not finish; re-run to complete it"
            ) from None

    def load_runs(self, keys: Iterable[str]) -> list[dict[str, Any]]:
        """Stored RunResults, in the order of `keys`."""
        return [self.load_run(k) for k in keys]

    # ----------------------------------------------------------------------- tables

    def build_tables(self, keys_in_order: Sequence[str],
                     sweep_cols: Sequence[str] = ()) -> Results:
        """The five tables from the run files, rows in the order of `keys_in_order`."""
        sweep_cols = list(sweep_cols)
        runs = self.load_runs(keys_in_order)
        summary = _summary_table([r["row"] for r in runs], sweep_cols)
        group_cols = [*sweep_cols, "control"]
        misuse = _misuse_rows(runs, sweep_cols)
        return Results(
            summary=summary,
            aggregate=stats.aggregate(summary, group_cols),
            misuse=misuse,
            misuse_kinds=stats.misuse_by_kind(misuse, sweep_cols),
            timeline=_series_table(runs, sweep_cols, "timeline", ("t", "exposure")),
            latency=_series_table(runs, sweep_cols, "latency_ms", ("q", "ms")),
        )

    def write_tables(self, keys_in_order: Sequence[str],
                     sweep_cols: Sequence[str] = ()) -> Results:
        """Build the tables and write `<table>.csv` for each, atomically."""
        res = self.build_tables(keys_in_order, sweep_cols)
        changed = False
        for name in TABLES:
            path, text = self.path / f"{name}.csv", to_csv_text(getattr(res, name))
            old = path.read_bytes() if path.is_file() else None
            changed |= old != text.encode("utf-8")
            atomic_write_text(path, text)
        if changed:
            _remove_views(self.path)
        with contextlib.suppress(FileNotFoundError):
            res.manifest = self.read_manifest()
        return res

    # ----------------------------------------------------------------------- manifest

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        """`manifest.json`: sorted keys, indent 2."""
        text = json.dumps(dict(manifest), sort_keys=True, indent=2, default=_json_default)
        atomic_write_text(self.manifest_path, text + "\n")

    def read_manifest(self) -> dict[str, Any]:
        """The manifest; FileNotFoundError if there is none."""
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"no manifest.json in {self.path}") from None


def _checksum(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(
        {k: v for k, v in data.items() if k != "checksum"}).encode("utf-8")).hexdigest()


def _run_problem(path: Path, key: str) -> str | None:
    """Why a saved run file cannot be trusted, or None if it is intact."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return f"unreadable ({type(e).__name__})"
    if not isinstance(data, dict):
        return "not a run record"
    missing = [k for k in ("key", "row", "checksum") if k not in data]
    if missing:
        return f"lacks {', '.join(missing)}"
    if data["key"] != key:
        return "its key does not match its file name"
    if not isinstance(data["row"], dict) or data["checksum"] != _checksum(data):
        return "its content does not match its checksum"
    return None


def _summary_table(rows: list[Mapping[str, Any]], sweep_cols: list[str]) -> pd.DataFrame:
    df = pd.DataFrame([dict(r) for r in rows])
    # Id and sweep columns always exist (even empty), so downstream code can rely on them.
    head = list(dict.fromkeys([*ID_COLUMNS, *sweep_cols]))
    metrics = [m for m in METRIC_NAMES if m in df.columns and m not in head]
    extra = sorted(c for c in df.columns if c not in head and c not in metrics)
    return df.reindex(columns=[*head, *metrics, *extra])


def _context(row: Mapping[str, Any], sweep_cols: list[str]) -> dict[str, Any]:
    ctx = {"control": row.get("control"), "replication": row.get("replication")}
    for c in sweep_cols:
        ctx[c] = row.get(c)
    return ctx


def _misuse_rows(runs: Sequence[Mapping[str, Any]], sweep_cols: list[str]) -> pd.DataFrame:
    records = []
    for r in runs:
        ctx = _context(r["row"], sweep_cols)
        for m in r.get("misuse") or ():
            records.append({**ctx, **m})
    base = ["control", "replication", *sweep_cols, "kind", *stats.MISUSE_COUNTS, "damage"]
    df = pd.DataFrame(records, columns=list(dict.fromkeys(
        [*base, *sorted({k for rec in records for k in rec} - set(base))])))
    return stats.misuse_table(df, sweep_cols)


def _series_table(runs: Sequence[Mapping[str, Any]], sweep_cols: list[str], entry: str,
                  value_cols: tuple[str, str]) -> pd.DataFrame:
    """Long format: one row per sample, prefixed by control, replication and sweep values."""
    ctx_cols = list(dict.fromkeys(["control", "replication", *sweep_cols]))
    parts: dict[str, list[Any]] = {c: [] for c in [*ctx_cols, *value_cols]}
    for r in runs:
        series = r.get(entry) or {}
        xs, ys = series.get(value_cols[0], []), series.get(value_cols[1], [])
        if len(xs) != len(ys):
            raise ValueError(f"run {r.get('key')}: {entry} has {len(xs)} {value_cols[0]} "
                             f"but {len(ys)} {value_cols[1]} values")
        ctx = _context(r["row"], sweep_cols)
        for c in ctx_cols:
            parts[c].extend([ctx[c]] * len(xs))
        parts[value_cols[0]].extend(float(x) for x in xs)
        parts[value_cols[1]].extend(float(y) for y in ys)
    df = pd.DataFrame(parts, columns=[*ctx_cols, *value_cols])
    for c in value_cols:
        df[c] = df[c].astype("float64")
    return df


# --------------------------------------------------------------------------- manifest and load

def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _version_of(module: str) -> str | None:
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return None


def manifest_base() -> dict[str, Any]:
    """Provenance for `manifest.json`: versions, platform, git commit, code version, time.

    The timestamp lives only here; the CSVs never carry it, so they stay byte-identical.
    """
    return {
        "simharness": _simharness_version(),
        "code_version": code_version(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "simpy": _version_of("simpy"),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
        "command": list(sys.argv),
        "created_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def load_results(path: str | os.PathLike[str]) -> Results:
    """Read a results folder's tables and manifest (for plots and reports)."""
    folder = Path(path)
    if not (folder / "summary.csv").is_file():
        hint = ("the folder does not exist" if not folder.exists()
                else "it has no summary.csv (the run may still be in progress or was interrupted)")
        raise FileNotFoundError(
            f"{folder} is not a simharness results folder: {hint}. "
            f"Create one with `simharness run SCENARIO --out {folder}`.")
    res = Results(**{name: _read_csv(folder / f"{name}.csv") for name in TABLES})
    manifest = folder / "manifest.json"
    if manifest.is_file():
        # The manifest is provenance: a damaged one loses that, not the tables.
        try:
            res.manifest = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            sys.stderr.write(f"warning: {manifest}: unreadable ({type(e).__name__}); "
                             "reporting without provenance\n")
        if not isinstance(res.manifest, dict):
            res.manifest = {}
    return res
