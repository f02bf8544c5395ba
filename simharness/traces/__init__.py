"""Real agent telemetry in and out: OTLP JSON spans (OpenTelemetry GenAI or OpenInference) to a
canonical JSONL of tasks and tool calls (otlp.py, calls.py); a trace replayed under each control
(replay.py); a scenario fitted to a trace (calibrate.py); simulated runs as OTLP spans
(export.py). No OpenTelemetry package is needed to read or write the files."""
