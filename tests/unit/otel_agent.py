"""A small scripted agent instrumented with the OpenTelemetry SDK, as a team would record one:
GenAI semantic conventions (invoke_agent / execute_tool) or OpenInference (AGENT / TOOL spans),
written by the SDK's own encoders (OTLP protobuf -> JSON) or its ConsoleSpanExporter.

The script (times in seconds after T0): two support agents each run one task; support-0's
task reads a ticket, hands research to researcher-0 (which searches the wiki), then sends a
reply; support-1's task reads a ticket, fails a lookup (`lookup_order` raises) and updates the
ticket. `SCRIPT` is the expected canonical result, written down by hand from this description.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
from google.protobuf.json_format import MessageToDict  # noqa: E402
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace.export import (  # noqa: E402
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import Status, StatusCode  # noqa: E402

T0 = 1_767_225_600_000_000_000  # ns
S = 1_000_000_000

# (agent, archetype, task start, task end, [(tool, start, end, args, fails) | ("delegate", ...)])
SCRIPT = [
    ("support-0", "support", 0.0, 9.0, [
        ("get_ticket", 1.0, 1.5, {"ticket_id": 7}, False),
        ("delegate", "researcher-0", "researcher", 2.0, 6.0, [
            ("search_wiki", 3.0, 4.25, {"query": "refund policy"}, False),
        ]),
        ("send_reply", 7.0, 7.5, {"to": "alice@example.com", "body": "done"}, False),
    ]),
    ("support-1", "support", 0.5, 8.0, [
        ("get_ticket", 1.25, 1.75, {"ticket_id": 8}, False),
        ("lookup_order", 2.0, 2.5, {"order": "A-1"}, True),
        ("update_ticket", 5.0, 6.0, {"ticket_id": 8, "status": "closed"}, False),
    ]),
]


def _attrs(convention: str, kind: str, **kw) -> dict:
    if convention == "genai":
        if kind == "agent":
            return {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": kw["archetype"],
                    "gen_ai.agent.id": kw["agent"]}
        return {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": kw["tool"],
                "gen_ai.tool.call.arguments": json.dumps(kw["args"])}
    from openinference.semconv.trace import OpenInferenceSpanKindValues, SpanAttributes

    if kind == "agent":
        return {SpanAttributes.OPENINFERENCE_SPAN_KIND: OpenInferenceSpanKindValues.AGENT.value,
                "agent.name": kw["archetype"], SpanAttributes.GRAPH_NODE_ID: kw["archetype"]}
    return {SpanAttributes.OPENINFERENCE_SPAN_KIND: OpenInferenceSpanKindValues.TOOL.value,
            SpanAttributes.TOOL_NAME: kw["tool"],
            SpanAttributes.INPUT_VALUE: json.dumps(kw["args"])}


def record(convention: str = "genai", console: io.StringIO | None = None):
    """Run the script under a TracerProvider; the finished spans (and console output)."""
    mem = InMemorySpanExporter()
    provider = sdk_trace.TracerProvider(resource=Resource.create({"service.name": "helpdesk"}))
    provider.add_span_processor(SimpleSpanProcessor(mem))
    if console is not None:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=console)))
    tracer = provider.get_tracer("scripted-agent")

    def task(agent, archetype, start, end, steps):
        name = f"invoke_agent {archetype}" if convention == "genai" else archetype
        span = tracer.start_span(name, start_time=T0 + int(start * S),
                                 attributes=_attrs(convention, "agent", agent=agent,
                                                   archetype=archetype))
        from opentelemetry import trace

        with trace.use_span(span, end_on_exit=False):
            for step in steps:
                if step[0] == "delegate":
                    task(*step[1:])
                    continue
                tool, t0, t1, args, fails = step
                name = f"execute_tool {tool}" if convention == "genai" else tool
                s = tracer.start_span(name, start_time=T0 + int(t0 * S),
                                      attributes=_attrs(convention, "tool", tool=tool, args=args))
                if fails:
                    s.set_status(Status(StatusCode.ERROR, "order not found"))
                    s.set_attribute("error.type", "NotFound")
                s.end(end_time=T0 + int(t1 * S))
        span.end(end_time=T0 + int(end * S))

    for entry in SCRIPT:
        task(*entry)
    provider.shutdown()
    return mem.get_finished_spans()


def write_otlp(path: Path, convention: str = "genai", lines: int = 1) -> Path:
    """The spans as OTLP JSON (protobuf's JSON mapping of ExportTraceServiceRequest: ids in
    base64), in one document or split over `lines` JSON lines (the Collector file exporter)."""
    spans = list(record(convention))
    chunks = [spans[i::lines] for i in range(lines)]
    docs = [json.dumps(MessageToDict(encode_spans(c))) for c in chunks]
    path.write_text("\n".join(docs) + "\n")
    return path


def write_console(path: Path, convention: str = "genai") -> Path:
    """The spans as the SDK's ConsoleSpanExporter prints them."""
    out = io.StringIO()
    record(convention, console=out)
    path.write_text(out.getvalue())
    return path


def write_custom(path: Path, build, service: str = "svc", console: bool = False) -> Path:
    """OTLP JSON (or the console exporter's text) of the spans `build(tracer, at)` makes with
    the SDK; `at(seconds)` gives a start/end time argument. For shapes the scripted agent
    does not have."""
    mem = InMemorySpanExporter()
    out = io.StringIO()
    provider = sdk_trace.TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=out) if console
                                                    else mem))
    build(provider.get_tracer("custom"), lambda s: T0 + int(s * S))
    provider.shutdown()
    path.write_text(out.getvalue() if console else
                    json.dumps(MessageToDict(encode_spans(mem.get_finished_spans()))))
    return path


def write_both(otlp_path: Path, console_path: Path, convention: str = "genai") -> None:
    """One recording written twice: OTLP JSON and the console exporter's text."""
    out = io.StringIO()
    spans = list(record(convention, console=out))
    otlp_path.write_text(json.dumps(MessageToDict(encode_spans(spans))))
    console_path.write_text(out.getvalue())
