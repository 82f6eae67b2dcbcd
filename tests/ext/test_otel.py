"""tether.ext.otel: the lifecycle as OpenTelemetry spans, read from the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import tether
from tests.conftest import bounded
from tether.ext.otel import LifecycleTracer


class Spans:
    """A tracer provider writing to memory, and ways to read what it got."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def tracer(self) -> LifecycleTracer:
        return LifecycleTracer(self.provider)

    @property
    def all(self) -> tuple[ReadableSpan, ...]:
        return tuple(self.exporter.get_finished_spans())

    def named(self, name: str) -> ReadableSpan:
        found = [span for span in self.all if span.name == name]
        assert len(found) == 1, (name, [span.name for span in self.all])
        return found[0]

    def parent_of(self, span: ReadableSpan) -> ReadableSpan | None:
        if span.parent is None:
            return None
        return next((s for s in self.all if s.context.span_id == span.parent.span_id), None)

    def children_of(self, span: ReadableSpan) -> list[str]:
        return [s.name for s in self.all if s.parent and s.parent.span_id == span.context.span_id]


@pytest.fixture
def spans() -> Iterator[Spans]:
    made = Spans()
    yield made
    made.provider.shutdown()


class Database(tether.Service):
    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.gate = gate

    async def start(self) -> None:
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)

    def on_reload(self) -> None:
        pass


class Cache(tether.Service):
    async def start(self) -> None:
        await asyncio.sleep(0)


class Api(tether.Service):
    def __init__(self, *dependencies: tether.Service) -> None:
        self.given = list(dependencies)

    @property
    def dependencies(self) -> list[list[tether.Service]]:
        return [self.given]

    def on_started(self) -> None:
        pass


async def test_a_start_is_a_waterfall_of_its_stages_and_services(spans: Spans) -> None:
    """The start is one span; its stages are children; each service's start a grandchild,
    beginning after the starts of what it depends on have ended."""
    api = Api(Database(), Cache())
    with tether.subscribe(spans.tracer()):
        async with api:
            pass
    start = spans.named("tether start Api")
    assert start.parent is None
    assert dict(start.attributes or {}) == {
        "tether.root": "Api",
        "tether.phase": "start",
        "tether.services": 3,
    }
    assert spans.children_of(start) == ["stage start", "stage started"]
    stage = spans.named("stage start")
    assert sorted(spans.children_of(stage)) == ["start Api", "start Cache", "start Database"]
    db, cache, top = (
        spans.named("start Database"),
        spans.named("start Cache"),
        spans.named("start Api"),
    )
    assert (top.attributes or {})["tether.dependencies"] == ("Database", "Cache")
    assert top.start_time is not None
    assert db.end_time is not None
    assert cache.end_time is not None
    assert top.start_time >= max(db.end_time, cache.end_time)
    assert spans.children_of(spans.named("stage started")) == ["started Api"]
    assert all(span.status.status_code is StatusCode.UNSET for span in spans.all)
    assert {span.context.trace_id for span in spans.all if span.name.startswith("start")} == {
        start.context.trace_id
    }


async def test_stop_and_reload_are_spans_of_their_own(spans: Spans) -> None:
    """A reload and a stop are each a trace: their stages and hooks inside, dependents
    stopping first."""
    api = Api(Database())
    with tether.subscribe(spans.tracer()):
        async with api:
            await tether.reload(api)
    reload = spans.named("tether reload Api")
    assert spans.children_of(reload) == ["stage reload"]
    assert spans.children_of(spans.named("stage reload")) == ["reload Database"]
    stop = spans.named("tether stop Api")
    assert stop.parent is None
    assert spans.children_of(spans.named("stage stop")) == ["stop Api", "stop Database"]
    stops = [spans.named("stop Api"), spans.named("stop Database")]
    assert stops[0].end_time is not None
    assert stops[1].start_time is not None
    assert stops[0].end_time <= stops[1].start_time
    traces = {spans.named(f"tether {name} Api").context.trace_id for name in ("start", "stop")}
    assert len(traces | {reload.context.trace_id}) == 3


async def test_a_failed_start_marks_the_service_its_stage_and_the_phase(spans: Spans) -> None:
    """The failing service's span is an error with the exception; so are its stage and the
    phase; the rollback stops what had started, inside the same trace."""

    class Broken(tether.Service):
        async def start(self) -> None:
            await asyncio.sleep(0)
            raise ConnectionError("database unreachable")

    with tether.subscribe(spans.tracer()), pytest.raises(ConnectionError):
        async with Api(Cache(), Broken()):
            pass
    broken = spans.named("start Broken")
    assert broken.status.status_code is StatusCode.ERROR
    assert broken.status.description == "ConnectionError: database unreachable"
    assert [event.name for event in broken.events] == ["exception"]
    start = spans.named("tether start Api")
    assert start.status.status_code is StatusCode.ERROR
    assert spans.named("stage start").status.status_code is StatusCode.ERROR
    assert spans.children_of(start) == ["stage start", "stage stop"]
    assert spans.children_of(spans.named("stage stop")) == ["stop Cache"]


async def test_concurrent_roots_each_get_their_own_trace(spans: Spans) -> None:
    """Two roots started at once, their services interleaving: each service's span is in
    its own root's trace."""
    gate = asyncio.Event()
    first, second = Api(Database(gate)), Api(Cache())
    first.name = "First"  # type: ignore[attr-defined]
    second.name = "Second"  # type: ignore[attr-defined]

    async def enter(root: Api) -> None:
        await root.__aenter__()

    with tether.subscribe(spans.tracer()):
        entering = asyncio.create_task(enter(first))
        await bounded(enter(second))
        gate.set()
        await bounded(entering)
        await first.__aexit__(None, None, None)
        await second.__aexit__(None, None, None)
    first_trace = spans.named("tether start Api[First]").context.trace_id
    second_trace = spans.named("tether start Api[Second]").context.trace_id
    assert first_trace != second_trace
    assert spans.named("start Database").context.trace_id == first_trace
    assert spans.named("start Cache").context.trace_id == second_trace


async def test_a_phase_is_a_child_of_the_span_current_where_it_was_asked_for(
    spans: Spans,
) -> None:
    """Wrapped in the application's own span, the start is part of that trace."""
    tracer = spans.provider.get_tracer("app")
    with tracer.start_as_current_span("deploy"), tether.subscribe(spans.tracer()):
        async with Api(Cache()):
            pass
    deploy = spans.named("deploy")
    assert spans.parent_of(spans.named("tether start Api")) == deploy
    assert spans.parent_of(spans.named("tether stop Api")) == deploy


async def test_spans_made_later_by_tasks_of_a_start_are_not_inside_it(spans: Spans) -> None:
    """tether never makes its spans current: a background task spawned by a start hook
    traces its own work as traces of its own."""
    tracer = spans.provider.get_tracer("app")
    done = asyncio.Event()

    class Worker(tether.Service):
        async def start(self) -> None:
            self.add_task(self.work())

        async def work(self) -> None:
            with tracer.start_as_current_span("job"):
                pass
            done.set()
            await asyncio.Event().wait()

    with tether.subscribe(spans.tracer()):
        async with Worker():
            await bounded(done.wait())
    assert spans.named("job").parent is None
    assert trace.get_current_span() is trace.INVALID_SPAN


async def test_a_root_entered_by_a_hook_is_a_phase_inside_the_outer_one(spans: Spans) -> None:
    """A start hook that enters another root: that start is a child of the outer stage."""
    inner = Cache()

    class Embeds(tether.Service):
        async def start(self) -> None:
            await inner.__aenter__()

        async def stop(self) -> None:
            await inner.__aexit__(None, None, None)

    with tether.subscribe(spans.tracer()):
        async with Embeds():
            pass
    nested = spans.named("tether start Cache")
    outer = spans.named("tether start Embeds")
    parent = spans.parent_of(nested)
    assert parent is not None
    assert parent.name == "stage start"
    assert spans.parent_of(parent) == outer
    assert spans.children_of(nested) == ["stage start"]


async def test_a_crashed_task_is_an_event_on_the_stop_it_causes(spans: Spans) -> None:
    """A task that crashes while the service starts is recorded on that service's span."""

    class Crashes(tether.Service):
        async def start(self) -> None:
            self.add_task(self.boom(), name="boom")
            await asyncio.sleep(0)
            await asyncio.sleep(0)

        async def boom(self) -> None:
            raise RuntimeError("bad")

    with tether.subscribe(spans.tracer()), pytest.raises(RuntimeError, match="bad"):
        async with Crashes() as service:
            await bounded(service.wait())
    events = [event for span in spans.all for event in span.events]
    crashed = [event for event in events if event.name == "tether.task_crashed"]
    assert len(crashed) == 1
    assert dict(crashed[0].attributes or {}) == {
        "tether.service": "Crashes",
        "tether.detail": "boom",
        "exception.type": "RuntimeError",
        "exception.message": "bad",
    }


async def test_a_service_threads_graph_is_traced_inside_the_outer_phases(spans: Spans) -> None:
    """The graph a ServiceThread runs in its thread: its start, reload and stop are each
    inside the outer phase that caused them, under that phase's stage."""

    class Outer(tether.Service):
        def __init__(self) -> None:
            self.thread = tether.ServiceThread(Api(Database()))

        @property
        def dependencies(self) -> list[tether.Service]:
            return [self.thread]

    outer = Outer()
    with tether.subscribe(spans.tracer()):
        async with outer:
            await tether.reload(outer)
    for phase in ("start", "reload", "stop"):
        inner = spans.named(f"tether {phase} Api")
        stage = spans.parent_of(inner)
        assert stage is not None, phase
        assert stage.name == f"stage {phase}"
        assert spans.parent_of(stage) == spans.named(f"tether {phase} Outer")
