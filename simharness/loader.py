"""YAML -> ScenarioSpec: safe YAML only, duplicate keys rejected, every problem as file:line:col.

Bad input is the normal case here: nothing in this module lets an exception other than
`ScenarioError` escape for a bad file, and every problem of a file is reported in one pass.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import re
import stat
import types
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Tag, ValidationError
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from simharness.spec import (
    DEFAULT_CONTROLS,
    ControlEntry,
    ScenarioSpec,
    _unknown,
    check_references,
    did_you_mean,
)
from simharness.units import parse_duration

__all__ = [
    "Problem",
    "ScenarioError",
    "data_dir",
    "dump_scenario",
    "find_scenario",
    "list_profiles",
    "list_scenarios",
    "load_scenario",
    "load_yaml",
    "scenario_sha256",
    "validate_files",
]

KeyPath = tuple[Any, ...]
Marks = dict[KeyPath, tuple[int, int]]

# Alias expansion is cheap for the YAML constructor (shared objects) but not for validation:
# a "billion laughs" file must fail fast instead of hanging pydantic.
MAX_NODES = 1_000_000
# PyYAML composes recursively; a located error beats Python's recursion limit.
MAX_DEPTH = 100
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, located as precisely as known."""

    file: str
    line: int | None
    col: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}" + (f":{self.col}" if self.col is not None else "")
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ScenarioError(Exception):
    """Bad input: every problem found, de-duplicated and sorted by file, line and column."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        unique = dict.fromkeys(problems)
        self.problems = sorted(unique, key=lambda p: (p.file, p.line or 0, p.col or 0))
        super().__init__("\n".join(map(str, self.problems)))

    def __reduce__(self) -> tuple[type, tuple[list[Problem]]]:
        # Keep the problems when raised in a worker process (the default pickles str(self)).
        return (ScenarioError, (self.problems,))


def _dotted(path: Iterable[Any]) -> str:
    return ".".join(map(str, path))


def _show(value: Any) -> str:
    """A short description of a bad value for a message."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple | set):
        return "a list"
    if value is None:
        return "nothing (null)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader with a nesting limit, whose value errors (`!!int abc`) carry a position."""

    def __init__(self, stream: bytes) -> None:
        self.depth = 0
        super().__init__(stream)

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise ComposerError(None, None, f"values are nested more than {MAX_DEPTH} deep",
                                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as e:  # PyYAML's own constructors fail in assorted ways on bad values
            raise ConstructorError(None, None, f"cannot read {_tag(node.tag)} value: {e}",
                                   node.start_mark) from None


def _tag(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


def _pos(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _reader_problem(file: str, raw: bytes, e: ReaderError) -> Problem:
    """A character YAML forbids, or bytes that are not text, located by line and column."""
    if e.encoding == "unicode":  # position counts characters
        before = raw.decode("utf-8", errors="replace")[: e.position]
        message = f"character {chr(e.character)!r} is not allowed in YAML"
    else:  # position counts bytes
        before = raw[: e.position].decode("utf-8", errors="replace")
        message = f"byte 0x{e.character:02x} is not valid {e.encoding} text ({e.reason})"
    lines = re.split("\r\n|[\r\n\x85\u2028\u2029]", before)
    return Problem(file, len(lines), len(lines[-1]) + 1, "", f"invalid YAML: {message}")


def _yaml_problem(file: str, e: yaml.YAMLError) -> Problem:
    if not isinstance(e, yaml.MarkedYAMLError):
        return Problem(file, None, None, "", f"invalid YAML: {e}")
    mark = e.problem_mark or e.context_mark
    message = e.problem or e.context or "invalid YAML"
    if e.problem and e.context:
        context = e.context
        if e.context_mark is not None and e.context_mark is not mark:
            context += f" at line {e.context_mark.line + 1}, column {e.context_mark.column + 1}"
        message += f" ({context})"
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
    return Problem(file, line, col, "", f"invalid YAML: {message}")


class _Abort(Exception):
    """Stop walking a node tree that cannot be turned into data (recursive or too large)."""


class _Walker:
    """Checks a composed YAML node tree and records where every key and item is.

    Runs before construction so that duplicate keys and unsafe tags are reported with their
    dotted path, all of them, and nothing is constructed from a file that has either.
    """

    def __init__(self, loader: _Loader, file: str) -> None:
        self.loader, self.file = loader, file
        self.marks: Marks = {}
        self.problems: list[Problem] = []
        self.checked: set[int] = set()  # nodes whose tags and keys were checked (aliases repeat)
        self.active: set[int] = set()  # nodes on the current walk stack: a repeat is a cycle
        self.budget = MAX_NODES

    def problem(self, node: Node, path: KeyPath | None, message: str) -> None:
        line, col = _pos(node)
        self.problems.append(Problem(self.file, line, col, _dotted(path or ()), message))

    def check_tag(self, node: Node, path: KeyPath | None) -> None:
        if node.tag not in self.loader.yaml_constructors:
            self.problem(node, path, f"tag {_tag(node.tag)!r} is not allowed: a scenario is "
                                     "plain YAML and nothing in it runs code")

    def visit(self, node: Node, path: KeyPath | None,
              defined: frozenset[Any] = frozenset()) -> set[Any]:
        """Walk `node` found at `path` (None: check only); return the keys a mapping defines."""
        self.budget -= 1
        if self.budget < 0:
            self.problem(node, path, f"more than {MAX_NODES} values after expanding aliases")
            raise _Abort
        if id(node) in self.active:
            self.problem(node, path, "recursive alias: a value contains itself")
            raise _Abort
        if len(self.active) >= MAX_DEPTH:  # aliases can nest what the composer saw as shallow
            self.problem(node, path, f"values are nested more than {MAX_DEPTH} deep")
            raise _Abort
        first = id(node) not in self.checked
        self.checked.add(id(node))
        if first:
            self.check_tag(node, path)
        if isinstance(node, ScalarNode) or (path is None and not first):
            return set()
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                for i, item in enumerate(node.value):
                    sub = None if path is None else (*path, i)
                    if sub is not None:
                        self.marks.setdefault(sub, _pos(item))
                    self.visit(item, sub)
                return set()
            return self.visit_mapping(node, path, defined, first)
        finally:
            self.active.discard(id(node))

    def visit_mapping(self, node: MappingNode, path: KeyPath | None, defined: frozenset[Any],
                      first: bool) -> set[Any]:
        own: set[Any] = set()
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            key = self.key(key_node, path, first)
            if key in own:
                if first:
                    self.problem(key_node, (*(path or ()), key), f"duplicate key {key!r}")
                sub = None
            else:
                own.add(key)
                # A key the merging mapping already defines is overridden: not where data is.
                sub = None if path is None or key in defined else (*path, key)
            if sub is not None:
                self.marks.setdefault(sub, _pos(key_node))
            self.visit(value_node, sub)
        # `<<: [*a, *b]`: explicit keys win, then earlier merged mappings over later ones.
        seen = frozenset(defined | own)
        for merge in merges:
            for source in merge.value if isinstance(merge, SequenceNode) else [merge]:
                if isinstance(source, MappingNode):  # anything else: the constructor reports it
                    seen |= self.visit(source, path, seen)
        return set(seen)

    def key(self, node: Node, path: KeyPath | None, first: bool) -> Any:
        if not isinstance(node, ScalarNode):
            return object()  # unhashable in Python: the constructor reports it with its mark
        if node.tag not in self.loader.yaml_constructors:
            if first:
                self.check_tag(node, path)
            return node.value
        try:  # deep: `!!map x` must fail here, not leave an unhashable half-built key
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            self.problems.append(_yaml_problem(self.file, e))
            return node.value


def _unshare(value: Any) -> Any:
    # YAML aliases share objects; --set edits one place, so every place gets its own copy.
    if isinstance(value, dict):
        return {k: _unshare(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unshare(v) for v in value]
    return value


def _parse(raw: bytes, file: str) -> tuple[dict[str, Any], Marks]:
    loader = None
    try:
        loader = _Loader(raw)  # reads the first bytes already: may raise a ReaderError
        root = loader.get_single_node()
        if root is None or (isinstance(root, ScalarNode) and root.tag.endswith(":null")
                            and not root.value):
            raise ScenarioError([Problem(file, 1, 1, "",
                                         "file is empty: expected a scenario mapping")])
        walker = _Walker(loader, file)
        walker.marks[()] = _pos(root)
        with contextlib.suppress(_Abort):  # the walker recorded why
            walker.visit(root, ())
        if walker.problems:
            raise ScenarioError(walker.problems)
        data = _unshare(loader.construct_document(root))
        if not isinstance(data, dict):  # checked on data: `!!set` makes a mapping node a set
            line, col = _pos(root)
            raise ScenarioError([Problem(file, line, col, "",
                                         f"expected a mapping at top level, got {_show(data)}")])
        return data, walker.marks
    except ReaderError as e:
        raise ScenarioError([_reader_problem(file, raw, e)]) from None
    except yaml.YAMLError as e:
        raise ScenarioError([_yaml_problem(file, e)]) from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml(path: str | Path) -> tuple[dict[str, Any], Marks]:
    """Plain data of a YAML mapping file and the (line, col) of every key and list item.

    `marks` maps a path tuple such as ("agents", 0, "role") to 1-based (line, column); the
    empty path is the top-level mapping. Raises ScenarioError.
    """
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ScenarioError([Problem(file, None, None, "",
                                     f"cannot read file: {e.strerror or e}")]) from None
    # A sweep loads the same scenario and profiles once per grid point: parse each content
    # once (pure-Python YAML with positions is the slow part) and hand out fresh copies.
    key = (file, raw)
    hit = _PARSED.get(key)
    if hit is None:
        hit = _parse(raw, file)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = hit
    data, marks = hit
    return _unshare(data), dict(marks)


_PARSED: dict[tuple[str, bytes], tuple[dict[str, Any], Marks]] = {}
_PARSED_MAX = 64


# --------------------------------------------------------------------------- model types
# Pydantic reports locations through union alternatives ("lognormal", "tool", "str") and
# knows nothing of our data; these helpers follow a location through the model's types.


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _members(tp: Any) -> list[tuple[Any, frozenset[str]]]:
    """The alternatives of a (possibly annotated, possibly union) type, each with its labels."""
    labels: set[str] = set()
    while get_origin(tp) is Annotated:
        labels.update(m.tag for m in tp.__metadata__ if isinstance(m, Tag))
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        return [m for arg in get_args(tp) for m in _members(arg)]
    if tp is type(None):
        return []
    if _is_model(tp):
        labels.add(tp.__name__)
        for field in tp.model_fields.values():  # discriminator values: `dist: Literal["beta"]`
            if get_origin(field.annotation) is Literal and len(get_args(field.annotation)) == 1:
                labels.add(str(get_args(field.annotation)[0]))
    else:
        origin = get_origin(tp) or tp
        labels.add(getattr(origin, "__name__", str(origin)).lower())
    return [(tp, frozenset(labels))]


def _members_of(candidates: Iterable[Any]) -> list[tuple[Any, frozenset[str]]]:
    return [m for c in candidates for m in _members(c)]


def _field(tp: Any, key: Any) -> Any:
    """The pydantic FieldInfo of `key` (name or alias) in model `tp`, or None."""
    if _is_model(tp):
        for name, field in tp.model_fields.items():
            if key in (name, field.alias):
                return field
    return None


def _child(tp: Any, key: Any) -> list[Any]:
    """Types a value at `key` inside a value of type `tp` may have ([] if `key` is invalid)."""
    if tp is Any:
        return [Any]
    if _is_model(tp):
        field = _field(tp, key)
        return [field.annotation] if field is not None else []
    origin, args = get_origin(tp) or tp, get_args(tp)
    if origin is dict:
        return [args[1] if args else Any]
    if origin in (list, tuple, set, frozenset) and isinstance(key, int):
        return [args[0] if args else Any]
    return []


def _field_names(members: Iterable[tuple[Any, frozenset[str]]]) -> list[str]:
    return sorted({f.alias or n for tp, _ in members if _is_model(tp)
                   for n, f in tp.model_fields.items()})


def _resolve_loc(root: Any, loc: Sequence[Any]) -> tuple[KeyPath, list[Any], tuple[int, str] | None]:
    """Follow a pydantic error location through the types below `root`.

    Returns the data path (union labels and '[key]' dropped), the candidate types at its end,
    and (position in the path, label) of the innermost union alternative the location names.
    """
    candidates: list[Any] = [root]
    path: list[Any] = []
    union: tuple[int, str] | None = None
    for seg in loc:
        members = _members_of(candidates)
        if isinstance(seg, str) and len(members) > 1:
            matched = [tp for tp, labels in members
                       if seg in labels or seg.split("[", 1)[0] in labels]
            if matched or (seg.endswith("]") and "[" in seg):
                candidates = matched or [tp for tp, _ in members]
                union = (len(path), seg)
                continue
        if seg == "[key]":
            continue
        path.append(seg)
        candidates = [c for tp, _ in members for c in _child(tp, seg)]
    return tuple(path), candidates, union


# --------------------------------------------------------------------------- pydantic errors


def _quoted(text: str) -> list[str]:
    return re.findall(r"'([^']*)'", text)


_EXPECTED = {
    "model_type": "a mapping", "model_attributes_type": "a mapping", "dict_type": "a mapping",
    "list_type": "a list", "string_type": "a string", "int_type": "an integer",
    "int_parsing": "an integer", "int_from_float": "a whole number", "float_type": "a number",
    "float_parsing": "a number", "bool_type": "true or false", "bool_parsing": "true or false",
}


def _message(error: Mapping[str, Any], root: Any, candidates: list[Any]) -> str:
    """A short, user-facing message for one pydantic error."""
    kind, loc, value = error["type"], error["loc"], error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        parent = _resolve_loc(root, loc[:-1])[1]
        return _unknown("key", loc[-1], _field_names(_members_of(parent)))
    if kind == "invalid_key" or (loc and loc[-1] == "[key]"):
        hint = " (quote it: YAML reads yes/no/on/off/true/false as booleans)" \
            if isinstance(value, bool) else ""
        return f"key {value!r} must be a string{hint}"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind == "union_tag_invalid":
        tags = _quoted(ctx.get("expected_tags", ""))
        disc = ctx.get("discriminator", "").strip("'")
        return (f"unknown {disc} {ctx.get('tag')!r}{did_you_mean(ctx.get('tag', ''), tags)}; "
                f"expected one of: {', '.join(tags)}")
    if kind == "union_tag_not_found":
        disc = ctx.get("discriminator", "").strip("'")
        fields = [_field(tp, disc) for tp, _ in _members_of(candidates)]
        tags = [str(a) for f in fields if f is not None for a in get_args(f.annotation)]
        hint = " (or give a bare duration like '300ms' for a constant)" if disc == "dist" else ""
        return f"missing {disc!r}: expected one of: {', '.join(tags)}{hint}"
    if kind == "literal_error":
        allowed = ctx.get("expected", "")
        return f"unknown value {value!r}{did_you_mean(str(value), _quoted(allowed))}; expected {allowed}"
    if kind == "string_pattern_mismatch":
        return (f"invalid name {value!r}: use letters, digits, '_', '.', '-', "
                "starting with a letter or '_'")
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_show(value)}"
    message = str(error["msg"]).replace("Input should be", "should be")
    return f"{message}, got {_show(value)}" if not isinstance(value, dict | list) else message


def _existing_prefix(data: Any, path: KeyPath) -> KeyPath:
    """The longest prefix of `path` that names a value in `data`."""
    node = data
    for i, key in enumerate(path):
        in_list = isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)
        if not (in_list or (isinstance(node, dict) and key in node)):
            return path[:i]
        node = node[key]
    return path


class _Error(NamedTuple):
    error: Mapping[str, Any]
    path: KeyPath
    candidates: list[Any]
    union: tuple[int, str] | None


def _shallow(e: _Error) -> bool:
    """A type mismatch of a whole union alternative: noise when another one says more."""
    return e.union is not None and len(e.path) == e.union[0] and e.error["type"].endswith("_type")


def _validation_problems(err: ValidationError, root: type[BaseModel],
                         data: Any) -> list[tuple[KeyPath, str]]:
    """(path, message) for every pydantic error, with per-alternative union noise folded."""
    errors = [_Error(e, *_resolve_loc(root, e["loc"])) for e in err.errors(include_url=False)]
    # Pydantic reports one error per alternative of a non-discriminated union.
    by_union: dict[KeyPath, dict[str, list[_Error]]] = defaultdict(lambda: defaultdict(list))
    for e in errors:
        if e.union is not None:
            by_union[e.path[:e.union[0]]][e.union[1]].append(e)
    out: list[tuple[KeyPath, str]] = []
    folded: set[KeyPath] = set()
    for e in errors:
        branches = by_union.get(e.path[:e.union[0]], {}) if e.union is not None else {}
        if len(branches) > 1 and _shallow(e):
            everything_shallow = all(_shallow(x) for b in branches.values() for x in b)
            if everything_shallow and e.path not in folded:  # one message for all alternatives
                folded.add(e.path)
                wanted = " or ".join(str(x.error["msg"]).removeprefix("Input should be ")
                                     for b in branches.values() for x in b)
                out.append((e.path, f"expected {wanted}, got {_show(e.error.get('input'))}"))
            continue
        path = e.path
        message = _message(e.error, root, e.candidates)
        if e.error["type"] == "union_tag_invalid":
            disc = (e.error.get("ctx") or {}).get("discriminator", "").strip("'")
            if disc.isidentifier():
                path = (*path, disc)
        if e.error["type"] not in ("missing", "extra_forbidden"):
            path = _existing_prefix(data, path)  # e.g. `think: 5x` is checked as think.value
        out.append((path, message))
    return out


class _Report:
    """Collects the problems of one file, placing each by the file's marks."""

    def __init__(self, file: str, marks: Marks, problems: list[Problem] | None = None) -> None:
        self.file, self.marks = file, marks
        self.problems: list[Problem] = [] if problems is None else problems
        self.overridden: set[KeyPath] = set()  # paths set by --set: their problems belong there
        self.claimed: set[KeyPath] = set()  # paths already reported: pydantic would repeat them

    @staticmethod
    def _under(path: KeyPath, prefixes: set[KeyPath]) -> bool:
        return any(path[: len(p)] == p for p in prefixes)

    def overrides(self, path: KeyPath) -> bool:
        return self._under(path, self.overridden)

    def add(self, path: Iterable[Any], message: str, shown: str | None = None) -> None:
        """A problem at `path`, placed by the file's marks and named `shown` (default: the
        dotted path)."""
        path = tuple(path)
        shown = _dotted(path) if shown is None else shown
        if self.overrides(path):
            self.problems.append(Problem("--set", None, None, shown, message))
            return
        line = col = None
        for i in range(len(path), -1, -1):
            if path[:i] in self.marks:
                line, col = self.marks[path[:i]]
                break
        self.problems.append(Problem(self.file, line, col, shown, message))

    def validate(self, model: type[BaseModel], data: Any) -> Any:
        """The validated model, or None after adding every problem."""
        try:
            return model.model_validate(data)
        except ValidationError as err:
            for path, message in _validation_problems(err, model, data):
                if not self._under(path, self.claimed):
                    self.add(path, message)
            return None

    def raise_if_any(self) -> None:
        if self.problems:
            raise ScenarioError(self.problems)


# --------------------------------------------------------------------------- overrides


class _BadPath(ValueError):
    pass


class _Override(NamedTuple):
    dotted: str
    segs: list[str]
    value: Any


def _parse_overrides(overrides: Iterable[str], problems: list[Problem]) -> list[_Override]:
    parsed = []
    for text in overrides:
        dotted, eq, raw = text.partition("=")
        dotted = dotted.strip()
        segs = dotted.split(".")
        if not eq or not dotted:
            problems.append(Problem("--set", None, None, dotted,
                                    f"expected dotted.path=value, got {text!r}"))
        elif "" in segs:
            problems.append(Problem("--set", None, None, dotted, "empty segment in dotted path"))
        else:
            try:
                parsed.append(_Override(dotted, segs, yaml.safe_load(raw)))
            except yaml.YAMLError as e:
                reason = getattr(e, "problem", None) or str(e).splitlines()[0]
                problems.append(Problem("--set", None, None, dotted,
                                        f"cannot parse value {raw!r}: {reason}"))
    return parsed


def _list_index(items: list[Any], seg: str) -> int:
    """A list position from an index or, for lists of named items, a name."""
    if seg.isdigit():
        if int(seg) < len(items):
            return int(seg)
        raise _BadPath(f"index {seg} is out of range: the list has {len(items)} items")
    names = [item.get("name") for item in items if isinstance(item, dict)]
    if seg in names:
        return names.index(seg)
    raise _BadPath(_unknown("item", seg, [n for n in names if isinstance(n, str)]))


def _fresh(members: list[tuple[Any, frozenset[str]]], key: Any) -> Any:
    """A new value for a missing mapping: the field's default, so --set changes only one key."""
    for tp, _ in members:
        field = _field(tp, key)
        if field is not None:
            default = field.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                return default.model_dump(by_alias=True)
            if isinstance(default, dict):
                return copy.deepcopy(default)
    return {}


def _set_path(node: Any, segs: Sequence[str], value: Any, roots: list[Any]) -> KeyPath:
    """Set `value` at `segs` below `node`, checked against the types `roots`; the data path."""
    candidates: list[Any] = roots
    path: list[Any] = []
    for i, seg in enumerate(segs):
        members = _members_of(candidates)
        key: Any
        if isinstance(node, list):
            key = _list_index(node, seg)
        elif isinstance(node, dict):
            key = seg
        else:
            where = _dotted(path) or "the scenario"
            raise _BadPath(f"{where} is {_show(node)}, not a mapping or a list")
        candidates = [c for tp, _ in members for c in _child(tp, key)]
        if not candidates:
            raise _BadPath(_unknown("key", key, _field_names(members)))
        path.append(key)
        if i == len(segs) - 1:
            node[key] = value
        else:
            if isinstance(node, dict) and node.get(key) is None:
                node[key] = _fresh(members, key)
            node = node[key]
    return tuple(path)


def _apply_control_overrides(entries: list[Any], overrides: list[_Override],
                             report: _Report) -> None:
    """`controls.<name>.<path>=value` sets a path inside that control's params."""
    names = [e if isinstance(e, str) else e.get("name") if isinstance(e, dict) else None
             for e in entries]
    known = [n for n in names if isinstance(n, str)]
    for ov in overrides:
        rest = ov.dotted.removeprefix("controls.")
        # Names may contain dots: the longest one that prefixes the rest wins.
        name = max((n for n in known if rest.startswith(n + ".")), key=len, default=None)
        if name is None:
            first = rest.split(".", 1)[0]
            message = (_unknown("control", first, known) if "." in rest
                       else "expected controls.<control>.<path in its params>=value")
            report.problems.append(Problem("--set", None, None, ov.dotted, message))
            continue
        i = names.index(name)
        entry = entries[i]
        if isinstance(entry, str):
            continue  # its profile could not be loaded: reported already
        if entry.get("params") is None:
            entry["params"] = {}
        try:
            sub = _set_path(entry["params"], rest[len(name) + 1:].split("."), ov.value, [Any])
        except _BadPath as e:
            report.problems.append(Problem("--set", None, None, ov.dotted, str(e)))
            continue
        report.overridden.add(("controls", i, "params", *sub))


# --------------------------------------------------------------------------- data files


def data_dir(kind: Literal["scenarios", "controls"]) -> Path:
    """Shipped scenarios or control profiles: inside an installed wheel, else the repo root."""
    if kind not in ("scenarios", "controls"):
        raise ValueError(f"unknown data kind {kind!r}")
    package = Path(__file__).resolve().parent
    packaged = package / "_data" / kind
    return packaged if packaged.is_dir() else package.parent / kind


def find_scenario(name_or_path: str | Path) -> Path:
    """An existing scenario file, or the shipped scenario of that name; else ScenarioError."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = str(name_or_path)
    if path.name == text:  # a bare name: look among the shipped scenarios
        shipped = data_dir("scenarios") / f"{text.removesuffix('.yaml')}.yaml"
        if shipped.is_file():
            return shipped
    if path.is_dir():
        message = "is a directory, not a scenario file"
    else:
        names = sorted(p.stem for p in data_dir("scenarios").glob("*.yaml"))
        message = ("no such file or shipped scenario" + did_you_mean(path.stem, names)
                   + (f"; shipped: {', '.join(names)}" if names else ""))
    raise ScenarioError([Problem(text, None, None, "", message)])


def list_scenarios() -> list[tuple[str, str]]:
    """(name, description) of every shipped scenario."""
    found = []
    for path in sorted(data_dir("scenarios").glob("*.yaml")):
        try:
            description = str(load_yaml(path)[0].get("description", ""))
        except ScenarioError as e:
            description = f"(invalid: {e.problems[0].message})"
        found.append((path.stem, description))
    return found


def list_profiles(search_dirs: Iterable[Path]) -> dict[str, Path]:
    """Control profiles by name; a profile in an earlier directory hides later ones."""
    profiles: dict[str, Path] = {}
    for directory in search_dirs:
        if Path(directory).is_dir():
            for path in sorted(Path(directory).glob("*.yaml")):
                profiles.setdefault(path.stem, path)
    return profiles


def _profile_dirs(scenario: Path) -> list[Path]:
    """Where profile names are looked up, in order: next to the scenario, cwd, shipped."""
    dirs: dict[Path, Path] = {}
    for d in (scenario.parent / "controls", Path.cwd() / "controls", data_dir("controls")):
        dirs.setdefault(d.resolve(), d)
    return list(dirs.values())


#: largest empirical samples file read (a million samples is about 10 MB of text)
MAX_SAMPLES_BYTES = 16 * 1024 * 1024


def _read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; ValueError otherwise. Opened
    non-blocking and checked on the open descriptor: a FIFO or device never blocks a load."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > limit:
            raise ValueError(f"larger than {limit // (1024 * 1024)} MB")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(limit + 1)
    finally:
        os.close(fd)


def _read_samples(path: Path, report: _Report, at: KeyPath) -> list[float] | None:
    """Durations from a CSV file, one per line (first column); a first non-number is a header.
    Messages never quote the file's lines: it may hold anything (it may not be ours)."""
    try:
        raw = _read_regular(path, MAX_SAMPLES_BYTES)
        text = raw.decode("utf-8-sig")
        if len(raw) > MAX_SAMPLES_BYTES:
            raise ValueError(f"larger than {MAX_SAMPLES_BYTES // (1024 * 1024)} MB")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        reason = (e.strerror if isinstance(e, OSError) and e.strerror
                  else "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else str(e))
        report.add(at, f"cannot read samples file {str(path)!r}: {reason}")
        return None
    values: list[float] = []
    header, ok = False, True
    for lineno, line in enumerate(text.splitlines(), 1):
        cell = line.split(",", 1)[0].strip()
        if not cell or cell.startswith("#"):
            continue
        try:
            values.append(parse_duration(cell))
        except ValueError:
            if not values and not header:
                header = True
                continue
            report.problems.append(Problem(str(path), lineno, None, _dotted(at),
                                           "not a duration >= 0 (a number of seconds or "
                                           "a value like '250ms')"))
            ok = False
    if ok and not values:
        report.add(at, f"no samples in {str(path)!r}")
    return values if ok and values else None


def _load_samples(node: Any, base: Path, report: _Report, path: KeyPath = ()) -> None:
    """Replace every empirical `samples: file.csv` below `node` by the file's values."""
    if isinstance(node, dict):
        if node.get("dist") == "empirical" and isinstance(node.get("samples"), str):
            values = _read_samples(base / node["samples"], report, (*path, "samples"))
            if values is not None:
                node["samples"] = values
        for key, value in node.items():
            _load_samples(value, base, report, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _load_samples(value, base, report, (*path, i))


def _load_profile(path: Path) -> tuple[dict[str, Any], Marks]:
    """A control profile file as a checked plain mapping, and its marks; raises ScenarioError."""
    # Imported here: the control models pull in the workload, which loading does not need.
    from simharness.controls.base import get_model

    data, marks = load_yaml(path)
    data.setdefault("name", path.stem)
    report = _Report(str(path), marks)
    if data["name"] != path.stem:  # scenarios and --set name a profile by its file name
        report.add(("name",), f"profile name {data['name']!r} differs from its file name "
                              f"{path.name!r}")
    _load_samples(data, path.parent, report)  # relative to the profile, not the scenario
    if report.validate(ControlEntry, data) is not None:
        try:
            get_model(data["model"])
        except KeyError as e:
            report.add(("model",), str(e.args[0]))
    report.raise_if_any()
    return data, marks


def _resolve_controls(data: dict[str, Any], report: _Report, profiles: dict[str, Path],
                      selected: Sequence[str] | None) -> dict[int, tuple[str, Marks]]:
    """Replace profile names in `controls` by their profiles; append selected extra ones.

    Returns the profile file and marks of each entry that came from one, by position.
    """
    defaulted = "controls" not in data
    if defaulted:
        # With a selection the defaults would only be loaded to be dropped.
        data["controls"] = [] if selected else list(DEFAULT_CONTROLS)
    entries = data["controls"]
    origins: dict[int, tuple[str, Marks]] = {}
    if not isinstance(entries, list):
        return origins  # validation reports it

    def load(name: str, at: int) -> dict[str, Any] | None:
        try:
            profile, marks = _load_profile(profiles[name])
        except ScenarioError as e:
            report.problems.extend(e.problems)
            return None
        origins[at] = (str(profiles[name]), marks)
        return profile

    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            resolved = load(entry, i) if entry in profiles else None
            if resolved is None:
                report.claimed.add(("controls", i))  # reported here, not again by pydantic
                if entry not in profiles:
                    report.add(("controls", i), _unknown("control profile", entry, profiles)
                               + (" (from the default controls)" if defaulted else ""))
            entries[i] = resolved or entry
    names = {n for n in (e if isinstance(e, str) else e.get("name") for e in entries
                         if isinstance(e, str | dict)) if isinstance(n, str)}
    for name in selected or ():
        if name in names:
            continue
        if name not in profiles:
            report.problems.append(Problem("--controls", None, None, name,
                                           _unknown("control", name, names | profiles.keys())))
        elif (entry := load(name, len(entries))) is not None:
            entries.append(entry)
    return origins


def _check_control_params(spec: ScenarioSpec, report: _Report,
                          origins: dict[int, tuple[str, Marks]]) -> None:
    """Each control model checks its own params; problems go to the file that set them."""
    from simharness.controls.base import params_problems

    for i, entry in enumerate(spec.controls):
        for sub, message in params_problems(entry.model, entry.params, spec,
                                            explain=_validation_problems):
            full = ("controls", i, *sub)
            if i in origins and not report.overrides(full):
                _Report(*origins[i], report.problems).add(sub, message)
            else:  # named as --set names it: controls.<control>.<path in its params>
                inner = sub[1:] if sub[:1] == ("params",) else sub
                report.add(full, message, shown=_dotted(("controls", entry.name, *inner)))


# --------------------------------------------------------------------------- public API


def load_scenario(source: str | Path, overrides: Iterable[str] | None = (),
                  controls: Sequence[str] | None = None) -> ScenarioSpec:
    """Load, override, resolve and check a scenario; raise ScenarioError with every problem.

    `source` is a path or a shipped scenario name; `overrides` are `dotted.path=value`
    strings (`controls.<name>.<path>` sets inside that control's params); `controls`, if
    given, selects and orders the controls to run (scenario entries or any known profile).
    """
    path = find_scenario(source)
    data, marks = load_yaml(path)
    report = _Report(str(path), marks)
    for_controls = []
    for ov in _parse_overrides(overrides or (), report.problems):
        if ov.segs[0] == "controls" and len(ov.segs) > 1 and not ov.segs[1].isdigit():
            for_controls.append(ov)  # params exist only once profiles are resolved
            continue
        try:
            report.overridden.add(_set_path(data, ov.segs, ov.value, [ScenarioSpec]))
        except _BadPath as e:
            report.problems.append(Problem("--set", None, None, ov.dotted, str(e)))

    if controls is not None and not controls:
        report.problems.append(Problem("--controls", None, None, "", "select at least one control"))
    selected = list(dict.fromkeys(controls)) if controls else None
    origins = _resolve_controls(data, report, list_profiles(_profile_dirs(path)), selected)
    if isinstance(data["controls"], list):
        _apply_control_overrides(data["controls"], for_controls, report)
    _load_samples(data, path.parent, report)

    spec: ScenarioSpec | None = report.validate(ScenarioSpec, data)
    if spec is not None:
        references = check_references(spec) + _infinite_weights(spec)
        for at, message in references:
            report.add(at, message)
        if not references:  # the control models need a consistent scenario to check against
            _check_control_params(spec, report, origins)
    else:  # report the cross-reference problems too, in the same pass
        try:
            salvaged = _salvaged_references(data)
        except Exception:  # noqa: BLE001 - best effort on a broken file: the schema's
            salvaged = []  # problems are reported either way, never a traceback instead
        for at, message in salvaged:
            report.add(at, message)
    report.raise_if_any()
    assert spec is not None  # a failed validation added problems
    if selected:
        # Chosen after validation so that problems keep the positions of the file.
        spec = spec.model_copy(update={"controls": [spec.control(n) for n in selected]})
    return spec


_LISTS = ("resources", "tools", "agents", "controls")
_PLACEHOLDERS = {"schema_version": 1, "name": "scenario"}


def _salvaged_references(data: Any) -> list[tuple[tuple[Any, ...], str]]:
    """Cross-reference problems of a scenario that failed its schema: the items with schema
    errors are set aside (list items and tasks dropped, other fields back to their defaults),
    the rest checked, and problems that could come from what was set aside left out (they
    would name a dropped item). Paths point into the original file. Empty when nothing
    sound is left to check."""
    if not isinstance(data, dict):
        return []
    work = _unshare(data)
    # For each list section, the file index of each item still in `work`.
    kept = {k: list(range(len(work[k]))) for k in _LISTS if isinstance(work.get(k), list)}
    names: set[str] = set()
    for _ in range(4):  # setting one part aside can expose errors elsewhere: a few rounds
        try:
            spec = ScenarioSpec.model_validate(work)
            break
        except ValidationError as err:
            drop: dict[str, set[int]] = {k: set() for k in kept}
            for e in err.errors():
                loc = e["loc"]
                head = loc[0] if loc else None
                if head in kept and len(loc) == 1:
                    return []  # a whole required section is unusable: nothing sound to check
                if head in kept and len(loc) > 1 and isinstance(loc[1], int):
                    item = work[head][loc[1]]
                    if isinstance(item, dict) and isinstance(item.get("name"), str):
                        names.add(item["name"])
                    drop[head].add(loc[1])
                elif head == "tasks" and len(loc) > 1 and isinstance(work.get("tasks"), dict):
                    names.add(str(loc[1]))
                    work["tasks"].pop(loc[1], None)
                elif head in _PLACEHOLDERS:
                    work[head] = _PLACEHOLDERS[head]
                elif isinstance(head, str):
                    work.pop(head, None)
            for k, gone in drop.items():
                if not isinstance(work.get(k), list):
                    return []
                work[k] = [x for i, x in enumerate(work[k]) if i not in gone]
                kept[k] = [j for i, j in enumerate(kept[k]) if i not in gone]
    else:
        return []
    out = []
    for at, message in check_references(spec):
        if any(f"'{n}'" in message for n in names):
            continue  # it names something set aside for its own errors
        if at and at[0] in kept and len(at) > 1 and isinstance(at[1], int):
            at = (at[0], kept[at[0]][at[1]], *at[2:])
        out.append((at, message))
    return out


def _infinite_weights(spec: ScenarioSpec) -> list[tuple[tuple[Any, ...], str]]:
    """Weights must be finite: an inf weight makes exposure NaN and a task mix empty."""
    maps: list[tuple[tuple[Any, ...], Mapping[str, float]]] = [
        (("weights", "sensitivity"), spec.weights.sensitivity),
        (("weights", "action"), spec.weights.action), (("misuse", "kinds"), spec.misuse.kinds),
        *((("agents", i, "tasks"), a.tasks) for i, a in enumerate(spec.agents))]
    return [((*at, k), f"expected a finite weight, got {w!r}")
            for at, weights in maps for k, w in weights.items() if not math.isfinite(w)]


def validate_files(paths: Iterable[str | Path], max_actions: float | None = None
                   ) -> list[Problem]:
    """Every problem of the given scenario, control profile or policy files (empty: all
    valid). A scenario is also checked against the work cap of a run (`max_actions`)."""
    from simharness.estimate import DEFAULT_MAX_ACTIONS, work_problem

    problems: list[Problem] = []
    for source in paths:
        try:
            path = find_scenario(source)
            if path.suffix in (".cedar", ".rego"):
                problems += _policy_problems(path, path.suffix[1:])
                continue
            data, _ = load_yaml(path)
            if "rules" in data and not {"model", "schema_version"} & data.keys():
                problems += _policy_problems(path, "rules")
            elif "model" in data and "schema_version" not in data:
                problems += _profile_problems(path)
            else:
                spec = load_scenario(path)
                why = work_problem(spec, max_actions or DEFAULT_MAX_ACTIONS)
                if why:
                    problems.append(Problem(str(path), None, None, "", why))
        except ScenarioError as e:
            problems.extend(e.problems)
    return problems


def _reference_spec() -> ScenarioSpec:
    """The scenario a control profile or policy is checked against when validated alone."""
    return load_scenario(data_dir("scenarios") / "baseline.yaml", controls=["none"])


def _profile_problems(path: Path) -> list[Problem]:
    """A control profile checked as a run checks it: its file, then its model's params."""
    from simharness.controls.base import params_problems

    data, marks = _load_profile(path)
    report = _Report(str(path), marks)
    for sub, message in params_problems(data["model"], data.get("params") or {},
                                        _reference_spec(), explain=_validation_problems):
        report.add(sub, message)
    return report.problems


def _policy_problems(path: Path, engine: str) -> list[Problem]:
    """A policy file compiled as a run compiles it; rules files also get their value types
    checked, each problem at its line."""
    from simharness.policy.engines import load_policy
    from simharness.policy.rules import rules_problems

    if engine == "rules":
        data, marks = load_yaml(path)
        report = _Report(str(path), marks)
        for at, message in rules_problems(data):
            report.add(at, message)
        if report.problems:
            return report.problems
    try:
        load_policy(engine, path, _reference_spec().resources)
    except (ValueError, OSError) as e:  # PolicyError, a missing extra, an unreadable file
        text = str(e).removeprefix(f"{path}: ")
        return [Problem(str(path), None, None, "", text)]
    return []


def scenario_sha256(spec: ScenarioSpec) -> str:
    """Hash of the resolved scenario: equal specs, equal hashes, however the YAML was written."""
    text = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def dump_scenario(spec: ScenarioSpec) -> str:
    """YAML of the resolved scenario (profiles inlined, samples loaded); loads back equal."""
    data = spec.model_dump(mode="python", by_alias=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None,
                          width=100)
