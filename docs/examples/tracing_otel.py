"""The lifecycle as OpenTelemetry spans: a start read back as a waterfall."""

import asyncio

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tether
from tether.ext.otel import LifecycleTracer


class Database(tether.Service):
    async def start(self) -> None:
        await asyncio.sleep(0.03)  # the slow one


class Cache(tether.Service):
    async def start(self) -> None:
        await asyncio.sleep(0.01)


class Api(tether.Service):
    def __init__(self) -> None:
        self.database, self.cache = Database(), Cache()

    @property
    def dependencies(self) -> list[list[tether.Service]]:
        return [[self.database, self.cache]]  # started concurrently

    def on_started(self) -> None:
        pass


def waterfall(spans: list[ReadableSpan]) -> None:
    """Each span under its parent, in the order they began; for a service's start, the
    services it waited for (their starts ended before it began)."""
    ended = {span.name: span.end_time or 0 for span in spans}

    def show(parent: int | None, depth: int) -> None:
        children = [s for s in spans if (s.parent.span_id if s.parent else None) == parent]
        for span in sorted(children, key=lambda s: s.start_time or 0):
            dependencies = (span.attributes or {}).get("tether.dependencies", ())
            assert isinstance(dependencies, tuple)
            waited = [
                str(name)
                for name in dependencies
                if ended[f"start {name}"] <= (span.start_time or 0)
            ]
            after = f"  after {', '.join(waited)}" if waited else ""
            print(f"{'  ' * depth}{span.name}{after}")
            show(span.context.span_id, depth + 1)

    show(None, 0)


async def main() -> None:
    # In an application: the SDK with an exporter to your tracing backend (OTLP...).
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # tether.run subscribes a tracer by itself; here the graph starts in our code.
    with tether.subscribe(LifecycleTracer(provider)):
        async with Api():
            waterfall(list(exporter.get_finished_spans()))


asyncio.run(main())
