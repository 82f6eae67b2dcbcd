"""OpenTelemetry spans of the lifecycle, made from its events (`pip install 'tether[otel]'`).

Imports OpenTelemetry's API at the top: the runner imports this module only where the
API is installed (`_observe`), and `tether.ext.otel` makes it public.

Each phase (a start, stop or reload of a root) is a span, each stage in it a child
span, and each service's transition or hook in that stage a grandchild, timed from the
events, so a slow start reads as a waterfall. The phase a service event belongs to is
found through a context variable set in the task that runs the phase (the engine's
tasks for it inherit it); OpenTelemetry's own current span is never changed, so spans
made later by tasks that a start spawned do not end up inside the start's trace.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Final

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from tether._core._base import record
from tether._core._events import EventKind, LifecycleEvent
from tether._core._records import ServiceState, display_name
from tether._core._version import __version__

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import TracerProvider

    from tether._core._base import ServiceBase

__all__ = ["LifecycleTracer"]

_STARTING: Final = ServiceState.STARTING
_STOPPING: Final = ServiceState.STOPPING
_FAILED: Final = ServiceState.FAILED
_ENDINGS: Final = frozenset({ServiceState.RUNNING, ServiceState.STOPPED, _FAILED})
_TRANSITION_STAGES: Final = frozenset({"start", "stop"})


class _Phase:
    """One phase being traced: its span, the stage span open in it, its open services."""

    __slots__ = ("open", "root", "services", "span", "stage", "token")

    def __init__(self, span: Span, root: ServiceBase) -> None:
        self.span = span
        self.root = root
        self.stage: Span | None = None
        self.services: set[int] = set()
        self.open = True
        self.token: contextvars.Token[_Phase | None] | None = None

    def parent(self) -> Context:
        return trace.set_span_in_context(self.stage or self.span)


_current: contextvars.ContextVar[_Phase | None] = contextvars.ContextVar(
    "tether_traced_phase", default=None
)


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def _fail(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    text = str(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {text}" if text else None))


class LifecycleTracer:
    """A lifecycle subscriber that turns starts, stops and reloads into OpenTelemetry spans.

    `tether.run` (and so `tether run` and every pre-fork worker) subscribes one by
    itself when OpenTelemetry's API is installed; subscribe one yourself around a
    graph you start in your own code:

    ```python
    from tether.ext.otel import LifecycleTracer

    with tether.subscribe(LifecycleTracer()):
        async with Api():
            ...
    ```

    The spans, all of kind INTERNAL, timed by the events:

    * `tether start Api` (or `stop`, `reload`): one phase of the root `Api`;
      attributes `tether.root`, `tether.phase`, `tether.services`. It is a child of
      the span current where the phase was asked for (your own, if any), or, for a
      phase run inside another one (a hook entering another root), of that one.
    * `stage start`: each stage that runs in it (`tether.stage`).
    * `start Database`: each service's start or stop, from its `starting` to its
      `running` (or `stopped`), and each hook of the other stages (`started Api`);
      attributes `tether.service`, `tether.stage` and, for a start,
      `tether.dependencies` (the names it waited for).

    A failure sets the span's status to ERROR and records the exception, on the
    service, its stage and the phase alike. Spans come from the global tracer provider
    unless `tracer_provider` is given; with no SDK configured they cost little and
    go nowhere, as OpenTelemetry's API intends.
    """

    __slots__ = ("_open", "_tracer")

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("tether", __version__, tracer_provider=tracer_provider)
        self._open: dict[int, tuple[Span, _Phase]] = {}

    def __call__(self, event: LifecycleEvent) -> None:
        kind = event.kind
        if kind is EventKind.STATE:
            self._state(event)
        elif kind is EventKind.HOOK:
            self._hook(event)
        elif kind is EventKind.STAGE_BEGIN:
            phase = _current.get()
            if phase is not None and phase.open and event.stage is not None:
                if phase.stage is not None:
                    phase.stage.end(_ns(event.timestamp))
                phase.stage = self._tracer.start_span(
                    f"stage {event.stage}",
                    context=trace.set_span_in_context(phase.span),
                    attributes={"tether.stage": event.stage, "tether.services": event.count or 0},
                    start_time=_ns(event.timestamp),
                )
        elif kind is EventKind.STAGE_END:
            phase = _current.get()
            if phase is not None and phase.open and phase.stage is not None:
                if event.error is not None:
                    _fail(phase.stage, event.error)
                phase.stage.end(_ns(event.timestamp))
                phase.stage = None
        elif kind is EventKind.PHASE_BEGIN:
            self._phase_begin(event)
        elif kind is EventKind.PHASE_END:
            self._phase_end(event)
        elif kind in (EventKind.TASK_CRASHED, EventKind.RESTART):
            self._note(event)

    # ------------------------------------------------------------------ phases

    def _phase_begin(self, event: LifecycleEvent) -> None:
        root = event.service
        if root is None or event.stage is None:
            return
        outer = _current.get()
        context = outer.parent() if outer is not None and outer.open else None
        name = display_name(root)
        span = self._tracer.start_span(
            f"tether {event.stage} {name}",
            context=context,
            attributes={
                "tether.root": name,
                "tether.phase": event.stage,
                "tether.services": event.count or 0,
            },
            start_time=_ns(event.timestamp),
        )
        phase = _Phase(span, root)
        phase.token = _current.set(phase)

    def _phase_end(self, event: LifecycleEvent) -> None:
        phase = _current.get()
        if phase is None or not phase.open or phase.root is not event.service:
            return
        phase.open = False
        end = _ns(event.timestamp)
        for key in phase.services:
            found = self._open.pop(key, None)
            if found is not None:
                found[0].end(end)
        if phase.stage is not None:
            phase.stage.end(end)
        if event.error is not None:
            _fail(phase.span, event.error)
        phase.span.end(end)
        token = phase.token
        if token is not None:
            try:
                _current.reset(token)
            except ValueError:  # pragma: no cover - published from another context
                _current.set(None)

    # ---------------------------------------------------------------- services

    def _state(self, event: LifecycleEvent) -> None:
        service = event.service
        state = event.state
        if service is None or state is None:
            return
        key = id(service)
        if state is _STARTING or state is _STOPPING:
            phase = _current.get()
            if phase is None or not phase.open:
                return
            stage = "start" if state is _STARTING else "stop"
            name = display_name(service)
            attributes: dict[str, str | list[str]] = {"tether.service": name, "tether.stage": stage}
            if state is _STARTING:
                attributes["tether.dependencies"] = [dep.name for dep in record(service).deps]
            previous = self._open.pop(key, None)
            if previous is not None:
                previous[0].end(_ns(event.timestamp))
            span = self._tracer.start_span(
                f"{stage} {name}",
                context=phase.parent(),
                attributes=attributes,
                start_time=_ns(event.timestamp),
            )
            self._open[key] = (span, phase)
            phase.services.add(key)
        elif state in _ENDINGS:
            found = self._open.pop(key, None)
            if found is None:
                return
            span, phase = found
            phase.services.discard(key)
            if state is _FAILED and event.error is not None:
                _fail(span, event.error)
            span.end(_ns(event.timestamp))

    def _hook(self, event: LifecycleEvent) -> None:
        service = event.service
        stage = event.stage
        if service is None or stage is None:
            return
        if stage in _TRANSITION_STAGES:
            # A start or stop already has its span, from its state changes.
            found = self._open.get(id(service))
            if found is not None and event.error is not None:
                _fail(found[0], event.error)
            return
        phase = _current.get()
        if phase is None or not phase.open:
            return
        end = event.timestamp
        began = end - (event.duration or 0.0)
        name = display_name(service)
        span = self._tracer.start_span(
            f"{stage} {name}",
            context=phase.parent(),
            attributes={"tether.service": name, "tether.stage": stage},
            start_time=_ns(began),
        )
        if event.error is not None:
            _fail(span, event.error)
        span.end(_ns(end))

    def _note(self, event: LifecycleEvent) -> None:
        """A crashed task or a restart: an event on the span it happened under."""
        service = event.service
        found = self._open.get(id(service)) if service is not None else None
        if found is not None:
            span: Span = found[0]
        else:
            phase = _current.get()
            if phase is None or not phase.open:
                return
            span = phase.stage or phase.span
        attributes: dict[str, str | int] = {}
        if service is not None:
            attributes["tether.service"] = display_name(service)
        if event.detail is not None:
            attributes["tether.detail"] = event.detail
        if event.count is not None:
            attributes["tether.count"] = event.count
        if event.error is not None:
            attributes["exception.type"] = type(event.error).__name__
            attributes["exception.message"] = str(event.error)
        span.add_event(f"tether.{event.kind.value}", attributes, _ns(event.timestamp))
