"""The sink's jobs, with an OpenTelemetry SDK tracer provider configured the way a service
would: every finished span is appended to JOBSTREAM_TEST_SPANS as one JSON line."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import tests.apps.sink  # noqa: F401  (registers the jobs)


class FileExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a") as f:
            for s in spans:
                ctx, parent = s.get_span_context(), s.parent
                f.write(json.dumps({
                    "name": s.name,
                    "trace_id": f"{ctx.trace_id:032x}" if ctx else None,
                    "parent_span_id": f"{parent.span_id:016x}" if parent else None,
                    "status": s.status.status_code.name,
                    "attributes": dict(s.attributes or {}),
                }) + "\n")
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(FileExporter(os.environ["JOBSTREAM_TEST_SPANS"])))
trace.set_tracer_provider(provider)
