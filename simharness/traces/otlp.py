"""Reading OpenTelemetry spans from JSON files, without the OpenTelemetry SDK.

Three encodings are accepted, told apart by their content:
- OTLP/JSON: an object with `resourceSpans` (the OTLP/HTTP JSON body), one per file or one per
  line (the Collector's file exporter writes JSON lines). Trace and span ids are hex, as the
  OTLP spec says, or base64, as protobuf's generic JSON mapping writes them.
- The Python SDK's ConsoleSpanExporter: span objects (`context.trace_id` ...) one after another.

Every problem names the file, the line and the span id; nothing is half-read.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


class TraceInputError(ValueError):
    """A trace file that cannot be read as spans (one line per problem)."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(slots=True)
class Span:
    trace_id: str  # hex
    span_id: str  # hex
    parent_id: str | None
    name: str
    start: int  # nanoseconds since the epoch (kept whole: seconds as a float lose 0.2 us)
    end: int
    attributes: dict[str, Any]
    error: bool  # status ERROR or an error.type attribute
    resource: dict[str, Any] = field(default_factory=dict)
    where: str = ""  # file:line, for messages

    def label(self) -> str:
        return f"{self.where}: span {self.span_id}"


def _hex_id(value: Any, size: int) -> str | None:
    """An id as lower-case hex: from hex (`0x` allowed) or from base64 of `size` bytes."""
    if not isinstance(value, str) or not value:
        return None
    text = value[2:] if value.startswith("0x") else value
    if len(text) == 2 * size:
        try:
            return bytes.fromhex(text).hex()
        except ValueError:
            pass
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == size else None


def _any_value(v: Any) -> Any:
    """An OTLP AnyValue as a Python value."""
    if not isinstance(v, dict):
        return None
    for kind, x in v.items():  # one key
        if kind == "stringValue" or kind == "boolValue" or kind == "bytesValue":
            return x
        if kind == "intValue":
            return int(x)
        if kind == "doubleValue":
            return float(x)
        if kind == "arrayValue":
            return [_any_value(e) for e in (x or {}).get("values", [])]
        if kind == "kvlistValue":
            return {kv.get("key"): _any_value(kv.get("value")) for kv in (x or {}).get("values", [])}
        return x
    return None


def _attributes(items: Any) -> dict[str, Any]:
    if isinstance(items, dict):  # the console exporter writes a plain mapping
        return dict(items)
    return {kv["key"]: _any_value(kv.get("value")) for kv in items or []
            if isinstance(kv, dict) and "key" in kv}


def _nanos(value: Any) -> int:
    """Nanoseconds given as a number or a decimal string (OTLP's int64)."""
    return int(value)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _iso(value: Any) -> int:
    """Nanoseconds since the epoch of an ISO 8601 time (the console exporter's, in UTC)."""
    t = datetime.fromisoformat(str(value))  # Python 3.11 reads a trailing Z
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - _EPOCH) // timedelta(microseconds=1) * 1000


def _otlp_spans(doc: dict, where: str, out: list[Span], problems: list[str]) -> None:
    for rs in doc.get("resourceSpans") or []:
        resource = _attributes((rs.get("resource") or {}).get("attributes"))
        for ss in rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []:
            for s in ss.get("spans") or []:
                sid = _hex_id(s.get("spanId"), 8)
                label = f"{where}: span {s.get('spanId', '?')}"
                tid = _hex_id(s.get("traceId"), 16)
                if sid is None or tid is None:
                    problems.append(f"{label}: traceId/spanId must be 16/8 bytes in hex or "
                                    "base64")
                    continue
                try:
                    start = _nanos(s["startTimeUnixNano"])
                    end = _nanos(s.get("endTimeUnixNano", s["startTimeUnixNano"]))
                except (KeyError, TypeError, ValueError):
                    problems.append(f"{label}: startTimeUnixNano/endTimeUnixNano must be "
                                    "integers (nanoseconds since the epoch)")
                    continue
                parent = _hex_id(s.get("parentSpanId"), 8)
                attrs = _attributes(s.get("attributes"))
                status = (s.get("status") or {}).get("code")
                out.append(Span(tid, sid, parent, str(s.get("name", "")), start, end, attrs,
                                status in (2, "STATUS_CODE_ERROR") or "error.type" in attrs,
                                resource, where))


def _console_span(s: dict, where: str, out: list[Span], problems: list[str]) -> None:
    ctx = s.get("context") or {}
    sid, tid = _hex_id(ctx.get("span_id"), 8), _hex_id(ctx.get("trace_id"), 16)
    label = f"{where}: span {ctx.get('span_id', '?')}"
    if sid is None or tid is None:
        problems.append(f"{label}: context.trace_id/span_id must be hex ids")
        return
    try:
        start, end = _iso(s["start_time"]), _iso(s.get("end_time") or s["start_time"])
    except (KeyError, TypeError, ValueError):
        problems.append(f"{label}: start_time/end_time must be ISO 8601 times")
        return
    attrs = _attributes(s.get("attributes"))
    status = (s.get("status") or {}).get("status_code")
    out.append(Span(tid, sid, _hex_id(s.get("parent_id"), 8), str(s.get("name", "")), start, end,
                    attrs, status == "ERROR" or "error.type" in attrs,
                    _attributes((s.get("resource") or {}).get("attributes")), where))


def _loads() -> Any:
    """orjson's parser when installed (extra `traces`; 1.7x the standard one on OTLP JSON)."""
    try:
        import orjson

        return orjson.loads
    except ImportError:
        return json.loads


def _documents(text: str, path: str) -> list[tuple[Any, int]]:
    """Every JSON value in `text` (one document, JSON lines, or values back to back), each
    with the line it starts on."""
    if text.lstrip().startswith("{") and "\n" in text.strip():  # JSON lines: the fast path
        loads = _loads()
        try:
            return [(loads(line), n) for n, line in enumerate(text.split("\n"), start=1)
                    if line.strip()]
        except ValueError:
            pass  # a document spread over lines, or values back to back: scan below
    decoder = json.JSONDecoder()
    docs: list[tuple[Any, int]] = []
    i, n = 0, len(text)
    line, counted = 1, 0  # newlines are counted once, up to where the last value started
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return docs
        line += text.count("\n", counted, i)
        counted = i
        try:
            value, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise TraceInputError([f"{path}:{text.count(chr(10), 0, e.pos) + 1}: not JSON "
                                   f"({e.msg}); expected OTLP JSON or the console exporter's "
                                   "span objects"]) from None
        docs.append((value, line))


def read_spans(paths: Sequence[str | os.PathLike[str]]) -> list[Span]:
    """Every span of the files, in file order. Raises TraceInputError listing every problem."""
    spans: list[Span] = []
    problems: list[str] = []
    for path in paths:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            problems.append(f"{p}: cannot read ({e.__class__.__name__}: {e})")
            continue
        try:
            docs = _documents(text, str(p))
        except TraceInputError as e:
            problems += e.problems
            continue
        for doc, line in docs:
            where = f"{p}:{line}"
            if isinstance(doc, dict) and "resourceSpans" in doc:
                _otlp_spans(doc, where, spans, problems)
            elif isinstance(doc, dict) and "context" in doc:
                _console_span(doc, where, spans, problems)
            elif isinstance(doc, list) and all(isinstance(d, dict) and "context" in d for d in doc):
                for d in doc:
                    _console_span(d, where, spans, problems)
            else:
                problems.append(f"{where}: neither OTLP JSON (`resourceSpans`) nor a span "
                                "object (`context`)")
    bad = [s for s in spans if s.end < s.start]
    problems += [f"{s.label()}: ends before it starts" for s in bad]
    if problems:
        raise TraceInputError(problems)
    return spans
