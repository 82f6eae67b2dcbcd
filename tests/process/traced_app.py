"""A program traced by the runner: the application configures OpenTelemetry's SDK, as
applications do, with an exporter that prints each finished span as one JSON line."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import tether


class PrintingExporter(SpanExporter):
    """Writes `{"span": name, "parent": name or null, "status": ...}` per finished span."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            self.names[span.context.span_id] = span.name
            parent = None if span.parent is None else span.parent.span_id
            line = {"span": span.name, "parent": parent, "id": span.context.span_id}
            sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(PrintingExporter()))
trace.set_tracer_provider(provider)


class Database(tether.Service):
    def on_reload(self) -> None:
        sys.stdout.write("reloaded\n")
        sys.stdout.flush()


class Api(tether.Service):
    def __init__(self) -> None:
        self.database = Database()

    @property
    def dependencies(self) -> list[tether.Service]:
        return [self.database]

    def on_started(self) -> None:
        sys.stdout.write("serving\n")
        sys.stdout.flush()


api = Api()
